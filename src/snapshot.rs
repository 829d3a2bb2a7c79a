//! What a room publishes after every tick: typed state, no protocol.
//!
//! A [`Snapshot`] holds the tick's [`World`] (and the previous tick's, the
//! base of a delta) plus every player's input ack. It knows nothing of wire
//! formats. Each protocol's encoder turns it into bytes, and the pieces every
//! client of one encoding shares (the seed JSON, the binary delta) are
//! encoded once per tick, by whichever session needs them first, and kept in
//! the snapshot's [`EncodeCache`] for all the others.

use std::any::Any;
use std::sync::{Arc, OnceLock};

use crate::game::PlayerId;
use crate::interest::{CellIndex, Grid};
use crate::replicate::{Schema, World};

/// Cache slots: one per shared encoding (see `protocol::encoder`).
pub const CACHE_SLOTS: usize = 4;

/// Per-tick encodings, each computed at most once, by the first session that
/// needs it. Typed (`Any`), so encoders can share whatever shape suits them
/// (a text message, or per-cell pieces) without this module knowing them.
#[derive(Default)]
pub struct EncodeCache {
    slots: [OnceLock<Arc<dyn Any + Send + Sync>>; CACHE_SLOTS],
}

impl std::fmt::Debug for EncodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let filled = self.slots.iter().filter(|s| s.get().is_some()).count();
        write!(f, "EncodeCache({filled} of {CACHE_SLOTS} filled)")
    }
}

impl EncodeCache {
    /// The value in `slot`, built by `make` the first time it is asked for.
    /// A slot out of range gets a fresh value every time, and a slot holding
    /// another type gets `T::default()`: bugs in the caller, never a panic.
    pub fn get_or_init<T: Any + Send + Sync + Default>(
        &self,
        slot: usize,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        let Some(cell) = self.slots.get(slot) else {
            return Arc::new(make());
        };
        let mut made = None;
        let shared = cell.get_or_init(|| {
            let v: Arc<T> = Arc::new(make());
            made = Some(Arc::clone(&v));
            v
        });
        if let Some(v) = made {
            return v;
        }
        match Arc::clone(shared).downcast::<T>() {
            Ok(v) => v,
            Err(_) => {
                debug_assert!(false, "cache slot {slot} holds another type");
                Arc::new(T::default())
            }
        }
    }
}

/// One tick's output, shared by every session in the room.
#[derive(Debug)]
pub struct Snapshot {
    pub tick: u64,
    /// Server time of the tick, ms since the Unix epoch.
    pub time: f64,
    /// The grid clients' views are made of.
    pub grid: Grid,
    /// Every replicated entity after this tick.
    pub world: Arc<World>,
    /// `world`'s entities by grid cell.
    pub cells: Arc<CellIndex>,
    /// The world (and its cells) after tick `tick - 1`: a delta from it
    /// brings a client that received that tick up to this one.
    pub prev: Option<(Arc<World>, Arc<CellIndex>)>,
    /// `(player, last applied input seq)`, sorted by player id.
    pub acks: Vec<(PlayerId, u32)>,
    pub cache: EncodeCache,
    /// When the room published it: sessions measure their fan-out from here.
    pub published: std::time::Instant,
}

impl Snapshot {
    /// The snapshot a room starts with, before its first tick (tick 0).
    pub fn empty(schema: &'static Schema, grid: Grid) -> Self {
        Snapshot {
            tick: 0,
            time: 0.0,
            grid,
            world: Arc::new(World::new(schema)),
            cells: Arc::new(CellIndex::default()),
            prev: None,
            acks: Vec::new(),
            cache: EncodeCache::default(),
            published: std::time::Instant::now(),
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
