//! What a room publishes after every tick: typed state, no protocol.
//!
//! A [`Snapshot`] holds the tick's [`World`] (and the previous tick's, the
//! base of a delta) plus every player's input ack. It knows nothing of wire
//! formats. Each protocol's encoder turns it into bytes, and the pieces every
//! client of one encoding shares (the seed JSON, the binary delta) are
//! encoded once per tick, by whichever session needs them first, and kept in
//! the snapshot's [`EncodeCache`] for all the others.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::game::PlayerId;
use crate::replicate::{Schema, World};

/// Cache slots: one per shared encoding (see `protocol::encoder`).
pub const CACHE_SLOTS: usize = 4;

/// One shared encoding of a snapshot.
#[derive(Debug, Clone)]
pub enum Encoded {
    /// A text payload (`Utf8Bytes` so every client sends the same buffer).
    Text(axum::extract::ws::Utf8Bytes),
    /// Raw bytes: a binary payload, or a part of one.
    Bytes(Bytes),
}

/// Per-tick encodings, each computed at most once.
#[derive(Debug, Default)]
pub struct EncodeCache {
    slots: [OnceLock<Encoded>; CACHE_SLOTS],
}

impl EncodeCache {
    /// The encoding in `slot`, built by `make` the first time it is asked for.
    /// Out-of-range slots are built every time (never a panic).
    pub fn get_or_init(&self, slot: usize, make: impl FnOnce() -> Encoded) -> Encoded {
        match self.slots.get(slot) {
            Some(cell) => cell.get_or_init(make).clone(),
            None => make(),
        }
    }
}

/// One tick's output, shared by every session in the room.
#[derive(Debug)]
pub struct Snapshot {
    pub tick: u64,
    /// Server time of the tick, ms since the Unix epoch.
    pub time: f64,
    /// Every replicated entity after this tick.
    pub world: Arc<World>,
    /// The world after tick `tick - 1`: a delta from it brings a client that
    /// received that tick up to this one.
    pub prev: Option<Arc<World>>,
    /// `(player, last applied input seq)`, sorted by player id.
    pub acks: Vec<(PlayerId, u32)>,
    pub cache: EncodeCache,
}

impl Snapshot {
    /// The snapshot a room starts with, before its first tick (tick 0).
    pub fn empty(schema: &'static Schema) -> Self {
        Snapshot {
            tick: 0,
            time: 0.0,
            world: Arc::new(World::new(schema)),
            prev: None,
            acks: Vec::new(),
            cache: EncodeCache::default(),
        }
    }

    /// The last input `seq` of `player` this snapshot reflects (0 if none).
    pub fn ack(&self, player: PlayerId) -> u32 {
        self.acks
            .binary_search_by_key(&player, |&(p, _)| p)
            .ok()
            .and_then(|i| self.acks.get(i))
            .map_or(0, |&(_, seq)| seq)
    }
}

/// Milliseconds since the Unix epoch, as clients use for `server_time`.
pub fn unix_millis(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}
