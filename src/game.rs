//! The seam between the server and the rules of a game.
//!
//! Rooms, sessions and protocols are generic over [`Game`]; they never look
//! inside a game's state. A game is a plain, synchronous state machine: no IO,
//! no clocks, no global randomness. That keeps it deterministic for a given
//! seed and its inputs, so it can be unit-tested without sockets, and it lets
//! the room task own it without locks.

use serde::de::DeserializeOwned;
use serde::Serialize;

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

/// One player as the seed's `state_update` message lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedPlayer {
    /// The seed sends ids as strings.
    pub id: String,
    /// Whole numbers are written as JSON integers, as the seed (Python ints)
    /// does, so strictly typed seed-protocol clients keep working.
    #[serde(serialize_with = "whole_as_integer")]
    pub x: f64,
    #[serde(serialize_with = "whole_as_integer")]
    pub y: f64,
    pub color: String,
}

fn whole_as_integer<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    // Below 2^53 every whole f64 converts to i64 exactly.
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// The rules of a game, driven by a room at a fixed tick.
///
/// Per tick the room calls [`Game::input`] for every player that has an input
/// queued (at most one each), then [`Game::tick`] once, then
/// [`Game::snapshot`] once; the snapshot is serialised once and shared by every
/// client in the room.
pub trait Game: Send + 'static {
    /// One tick's worth of one player's control, as sent by native clients in
    /// the `input` field of an `input` message.
    type Input: DeserializeOwned + Send + 'static;

    /// What every client in the room sees after a tick.
    type Snapshot: Serialize;

    /// What a client needs to know about the world to render and predict it
    /// (sent once in `welcome`).
    type Info: Serialize;

    /// Builds a fresh game for a new room; `seed` feeds the game's RNG, so
    /// two games with the same seed and inputs evolve identically.
    fn new(seed: u64, tick_rate: u32) -> Self;

    /// Adds a player. The room guarantees ids are unique.
    fn join(&mut self, player: PlayerId);

    /// Removes a player; unknown ids are ignored.
    fn leave(&mut self, player: PlayerId);

    /// Applies one tick of one player's input; called before [`Game::tick`].
    fn input(&mut self, player: PlayerId, input: Self::Input);

    /// Advances the world by one tick.
    fn tick(&mut self);

    /// The state every client receives.
    fn snapshot(&self) -> Self::Snapshot;

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

    /// The players as the seed's `state_update` lists them; `None` if this
    /// game cannot be shown by the seed client.
    fn seed_players(&self) -> Option<Vec<SeedPlayer>> {
        None
    }
}
