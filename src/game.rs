//! The seam between the server and the rules of a game.
//!
//! Rooms, sessions and protocols are generic over [`Game`]; they never look
//! inside a game's state. A game is a plain, synchronous state machine: no IO,
//! no clocks, no global randomness. That keeps it deterministic for a given
//! seed and its inputs, so it can be unit-tested without sockets, and it lets
//! the room task own it without locks.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::replicate::{Schema, World};

/// Identifies a player for the lifetime of the server process.
///
/// Ids are handed out sequentially per server (like the seed), never reused.
pub type PlayerId = u64;

/// One of the four directions the seed client sends in its `move` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SeedDirection {
    Up,
    Down,
    Left,
    Right,
}

/// What a room tells its game when it creates it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Feeds the game's RNG: two games with the same settings and inputs
    /// evolve identically.
    pub seed: u64,
    /// Ticks per second.
    pub tick_rate: u32,
    /// Side of the square world in px (`--world-size`); games that have a
    /// map should use it.
    pub world_size: f64,
}

impl Settings {
    /// The seed's defaults: 20 Hz, a 500 px world.
    pub fn with_seed(seed: u64) -> Self {
        Settings {
            seed,
            tick_rate: 20,
            world_size: 500.0,
        }
    }
}

/// The rules of a game, driven by a room at a fixed tick.
///
/// Per tick the room calls [`Game::input`] for every player that has an input
/// queued (at most one each), then [`Game::tick`] once, then
/// [`Game::replicate`] once. The game only says *what* its entities are (an
/// id, a position and the fields in its [`Game::SCHEMA`]); the framework
/// encodes them for every protocol, diffs them tick to tick for the binary
/// protocol, and filters them per client by position.
pub trait Game: Send + 'static {
    /// One tick's worth of one player's control, as sent by native clients in
    /// the `input` field of an `input` message.
    type Input: DeserializeOwned + Send + 'static;

    /// What a client needs to know about the world to render and predict it
    /// (sent once in `welcome`).
    type Info: Serialize;

    /// Builds a fresh game for a new room.
    fn new(settings: &Settings) -> Self;

    /// Adds a player. The room guarantees ids are unique.
    fn join(&mut self, player: PlayerId);

    /// Removes a player; unknown ids are ignored.
    fn leave(&mut self, player: PlayerId);

    /// Applies one tick of one player's input; called before [`Game::tick`].
    fn input(&mut self, player: PlayerId, input: Self::Input);

    /// Advances the world by one tick.
    fn tick(&mut self);

    /// The fields every entity replicates, besides its id and position.
    const SCHEMA: &'static Schema;

    /// Writes every entity clients may see into `world` (any order; id order
    /// is cheapest). The entity whose id is a player's id is that player's
    /// own: the binary protocol sends it exactly (others are quantised to
    /// 1/8 px), and the player's view of a large world is centred on it.
    fn replicate(&self, world: &mut World);

    /// The world description sent in `welcome`.
    fn info(&self) -> Self::Info;

    /// Translates the seed client's `move` into one tick of input. Games that
    /// cannot be played from the seed client keep the default (`None`), and
    /// seed moves are then refused with an error.
    fn seed_move(_direction: SeedDirection) -> Option<Self::Input>
    where
        Self: Sized,
    {
        None
    }

    /// Whether the seed client can play this game: seed-protocol clients are
    /// refused (close 1008, with a reason) by games that cannot.
    fn speaks_seed() -> bool
    where
        Self: Sized,
    {
        Self::seed_move(SeedDirection::Up).is_some()
    }
}
