//! Rooms: one task per room owns its game and ticks it at a fixed rate.
//!
//! Sessions never touch the game. They send `Join`/`Leave` over the room's
//! command channel and push inputs into their own small bounded queue, which
//! the room drains at most one input per player per tick; that is what makes
//! flooding useless. After every tick the room has its game write the typed
//! [`World`] and publishes it as a [`Snapshot`] on its `fanout` channel. The room
//! never encodes anything and never asks which protocol a client speaks: each
//! session encodes for its own client (sharing per-tick encodings through the
//! snapshot's cache). A session picks up the newest snapshot when it is ready,
//! so a slow reader skips snapshots instead of queueing them and can never
//! slow the room down.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::fanout;
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, warn};

use crate::game::{Game, PlayerId, Settings};
use crate::interest::{CellIndex, Grid};
use crate::replicate::World;
use crate::snapshot::{unix_millis, EncodeCache, Snapshot};

/// Missed ticks a room catches up on after a stall; beyond this it skips.
const MAX_CATCH_UP_TICKS: u32 = 20;

/// Longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 32;

/// Checks a room name: 1 to 32 characters of `A-Z a-z 0-9 _ -`.
pub fn validate_room_name(name: &str) -> Result<&str, String> {
    if name.is_empty() || name.len() > MAX_ROOM_NAME {
        return Err(format!(
            "room name must be 1 to {MAX_ROOM_NAME} characters long (got {})",
            name.chars().count()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "room name may only contain A-Z, a-z, 0-9, `_` and `-` (found {bad:?})"
        ));
    }
    Ok(name)
}

/// What a session gets back when it joins.
pub struct Joined<I> {
    /// Its input queue; `try_send`, and on full drop the input and record it
    /// with [`InputQueue::dropped`].
    pub inputs: InputQueue<I>,
    /// The game's world description for `welcome`.
    pub info: serde_json::Value,
}

/// The session's end of a player's input queue.
pub struct InputQueue<I> {
    sender: mpsc::Sender<(u32, I)>,
    /// Highest `seq` dropped because the queue was full.
    dropped: Arc<AtomicU32>,
}

impl<I> InputQueue<I> {
    /// Queues one tick of input. Returns false if it was dropped: the queue
    /// is full (the client sends faster than the tick) or the room is gone.
    ///
    /// A dropped input is acknowledged once the inputs queued before it are
    /// applied, so a client never waits for an ack that cannot come and
    /// replays a dropped input for ever.
    pub fn push(&self, seq: u32, input: I) -> bool {
        match self.sender.try_send((seq, input)) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.fetch_max(seq, Ordering::Relaxed);
                false
            }
        }
    }
}

/// Messages from sessions to their room.
pub enum Command<G: Game> {
    Join {
        player: PlayerId,
        reply: oneshot::Sender<Joined<G::Input>>,
    },
    /// `last` is decided by the registry: the room stops after the last player leaves.
    Leave { player: PlayerId, last: bool },
}

/// A session's way into a room.
pub struct RoomHandle<G: Game> {
    pub commands: mpsc::Sender<Command<G>>,
    pub snapshots: fanout::Receiver<Arc<Snapshot>>,
    /// Where sessions record their fan-out times.
    pub timings: Arc<RoomTimings>,
}

impl<G: Game> Clone for RoomHandle<G> {
    fn clone(&self) -> Self {
        RoomHandle {
            commands: self.commands.clone(),
            snapshots: self.snapshots.clone(),
            timings: Arc::clone(&self.timings),
        }
    }
}

/// Settings a room runs with.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    pub tick_rate: u32,
    pub input_buffer: usize,
    /// Side of the world (px), for the game and the spatial grid.
    pub world_size: f64,
    /// Side of the square each client sees (px).
    pub view_size: f64,
}

struct Member<I> {
    inputs: mpsc::Receiver<(u32, I)>,
    /// Shared with the session's [`InputQueue`].
    dropped: Arc<AtomicU32>,
    /// Every input with `seq <= ack` has been applied or dropped.
    ack: u32,
}

/// Recent durations of one kind in a room, for `GET /rooms`: how long ticks
/// take, and how long after a tick each client's message reaches its socket
/// (the fan-out). A tick is the game (inputs, tick, replicate) plus sorting
/// entities into cells and publishing; encoding happens in the sessions, so
/// it shows in the fan-out.
#[derive(Debug)]
pub struct Timings {
    inner: Mutex<Ring>,
    window: usize,
}

#[derive(Debug, Default)]
struct Ring {
    /// The last `window` durations in µs.
    us: Vec<u32>,
    next: usize,
    count: u64,
    over_budget: u64,
}

/// Durations over the last samples (a window of them), in ms.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct TimingSummary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Samples since the room started.
    pub count: u64,
    /// Samples longer than the tick interval.
    pub over_budget: u64,
}

impl Timings {
    /// Keeps the last `window` samples.
    pub fn new(window: usize) -> Self {
        Timings {
            inner: Mutex::new(Ring::default()),
            window: window.max(1),
        }
    }

    /// Records one duration; `budget` is what counts as too long.
    pub fn record(&self, took: Duration, budget: Duration) {
        let mut r = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        if r.us.len() < self.window {
            r.us.push(us);
        } else {
            let i = r.next;
            if let Some(slot) = r.us.get_mut(i) {
                *slot = us;
            }
        }
        r.next = (r.next + 1) % self.window;
        r.count += 1;
        if took > budget {
            r.over_budget += 1;
        }
    }

    pub fn summary(&self) -> TimingSummary {
        let r = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut us = r.us.clone();
        let (count, over_budget) = (r.count, r.over_budget);
        drop(r);
        if us.is_empty() {
            return TimingSummary::default();
        }
        us.sort_unstable();
        let at = |q: f64| {
            let i = ((us.len() - 1) as f64 * q).round() as usize;
            f64::from(us.get(i).copied().unwrap_or(0)) / 1000.0
        };
        TimingSummary {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
            count,
            over_budget,
        }
    }
}

/// Ticks the tick summary covers.
const TICK_WINDOW: usize = 1024;
/// Client messages the fan-out summary covers.
const FANOUT_WINDOW: usize = 16_384;

/// A room's timings.
#[derive(Debug)]
pub struct RoomTimings {
    pub tick: Timings,
    pub fanout: Timings,
    /// Time between a client's snapshots of consecutive ticks, as the server
    /// sent them: the gap jitter the server itself causes (a client's
    /// measured gaps add the network's and its own).
    pub send_gap: Timings,
}

impl Default for RoomTimings {
    fn default() -> Self {
        RoomTimings {
            tick: Timings::new(TICK_WINDOW),
            fanout: Timings::new(FANOUT_WINDOW),
            send_gap: Timings::new(FANOUT_WINDOW),
        }
    }
}

/// The room task's state.
struct Room<G: Game> {
    name: String,
    game: G,
    config: RoomConfig,
    members: BTreeMap<PlayerId, Member<G::Input>>,
    tick: u64,
    snapshots: fanout::Sender<Arc<Snapshot>>,
    /// The grid clients' views are made of.
    grid: Grid,
    /// The last published world and its cells: the base of the next delta.
    world: Arc<World>,
    cells: Arc<CellIndex>,
    /// Whether the game's replication errors were logged already (once per room).
    warned: bool,
    times: Arc<RoomTimings>,
    tick_interval: Duration,
}

impl<G: Game> Room<G> {
    fn join(&mut self, player: PlayerId) -> Joined<G::Input> {
        let (tx, rx) = mpsc::channel(self.config.input_buffer.max(1));
        let dropped = Arc::new(AtomicU32::new(0));
        self.game.join(player);
        self.members.insert(
            player,
            Member {
                inputs: rx,
                dropped: Arc::clone(&dropped),
                ack: 0,
            },
        );
        Joined {
            inputs: InputQueue {
                sender: tx,
                dropped,
            },
            info: serde_json::to_value(self.game.info()).unwrap_or_default(),
        }
    }

    fn leave(&mut self, player: PlayerId) {
        self.members.remove(&player);
        self.game.leave(player);
    }

    /// One tick: at most one input per player, advance, publish.
    fn step(&mut self, now: SystemTime) {
        let started = std::time::Instant::now();
        for (&player, member) in &mut self.members {
            match member.inputs.try_recv() {
                Ok((seq, input)) => {
                    self.game.input(player, input);
                    member.ack = seq;
                }
                // Queue drained: inputs dropped after it filled are done with too.
                Err(_) => {
                    member.ack = member.ack.max(member.dropped.load(Ordering::Relaxed));
                }
            }
        }
        self.game.tick();
        self.tick += 1;

        let mut world = World::with_capacity(G::SCHEMA, self.world.len());
        self.game.replicate(&mut world);
        world.finish();
        if let (Some(e), false) = (world.error(), self.warned) {
            self.warned = true;
            error!(room = %self.name, "the game wrote state that does not fit its schema (logged once per room): {e}");
        }
        let cells = Arc::new(CellIndex::build(&self.grid, &world));
        let world = Arc::new(world);
        let snapshot = Snapshot {
            tick: self.tick,
            time: unix_millis(now),
            grid: self.grid,
            world: Arc::clone(&world),
            cells: Arc::clone(&cells),
            prev: Some((
                std::mem::replace(&mut self.world, world),
                std::mem::replace(&mut self.cells, cells),
            )),
            acks: self.members.iter().map(|(&p, m)| (p, m.ack)).collect(),
            cache: EncodeCache::default(),
            published: std::time::Instant::now(),
        };
        // Stored even while no session is waiting; waiters wake in a stable order.
        self.snapshots.send(Arc::new(snapshot));
        self.times
            .tick
            .record(started.elapsed(), self.tick_interval);
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command<G>>, tick_interval: Duration) {
        let mut ticker = tokio::time::interval(tick_interval);
        // After a short stall, run the missed ticks back to back: tick n stays
        // at start + n periods, which clients use as their timeline, and
        // clients sending one input per tick do not pile up a backlog. The
        // burst costs no bandwidth (sessions only send the newest snapshot).
        // After a long stall, give up on catching up and restart the clock.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let max_lag = tick_interval * MAX_CATCH_UP_TICKS;
        loop {
            tokio::select! {
                // Joins and leaves first, so a tick never sees a half-joined player.
                biased;
                command = commands.recv() => match command {
                    Some(Command::Join { player, reply }) => {
                        let joined = self.join(player);
                        if reply.send(joined).is_err() {
                            // The session gave up while joining.
                            self.leave(player);
                        }
                    }
                    Some(Command::Leave { player, last }) => {
                        self.leave(player);
                        if last {
                            break;
                        }
                    }
                    None => break,
                },
                scheduled = ticker.tick() => {
                    if scheduled.elapsed() > max_lag {
                        warn!(room = %self.name, lag = ?scheduled.elapsed(), "room fell too far behind; skipping missed ticks");
                        ticker.reset();
                    }
                    self.step(SystemTime::now());
                }
            }
        }
        debug!(room = %self.name, ticks = self.tick, "room closed");
    }
}

/// Why a player could not get into a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveError {
    RoomFull { room: String, capacity: u32 },
    TooManyRooms { max: u32 },
}

impl std::fmt::Display for ReserveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReserveError::RoomFull { room, capacity } => write!(
                f,
                "room `{room}` is full ({capacity} players max); try again later or pick another room"
            ),
            ReserveError::TooManyRooms { max } => write!(
                f,
                "the server has reached its limit of {max} rooms; join an existing room or try again later"
            ),
        }
    }
}

struct Entry<G: Game> {
    handle: RoomHandle<G>,
    players: u32,
    times: Arc<RoomTimings>,
}

/// A room's line in `GET /rooms`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RoomSummary {
    pub name: String,
    pub players: u32,
    pub capacity: u32,
    /// How long ticks take.
    pub tick: TimingSummary,
    /// How long after its tick each client's snapshot reached its socket.
    pub fanout: TimingSummary,
    /// Time between one client's snapshots of consecutive ticks, as sent.
    pub send_gap: TimingSummary,
}

/// All rooms of a server, by name.
///
/// Player counts are kept here, under one lock, so that "is it full", "create
/// it" and "was that the last player" are decided atomically; the room task
/// learns from `Leave { last }` when to stop.
pub struct Rooms<G: Game> {
    rooms: Mutex<HashMap<String, Entry<G>>>,
    capacity: u32,
    max_rooms: u32,
    config: RoomConfig,
    tick_interval: Duration,
    /// Feeds each new room's game RNG a different seed.
    seeds: AtomicU64,
}

impl<G: Game> Rooms<G> {
    pub fn new(capacity: u32, max_rooms: u32, config: RoomConfig, tick_interval: Duration) -> Self {
        let seed = unix_millis(SystemTime::now()) as u64;
        Rooms {
            rooms: Mutex::new(HashMap::new()),
            capacity,
            max_rooms,
            config,
            tick_interval,
            seeds: AtomicU64::new(seed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<G>>> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a player into `name`, creating and starting the room if needed.
    /// Must be called within a tokio runtime.
    pub fn reserve(&self, name: &str) -> Result<RoomHandle<G>, ReserveError> {
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(name) {
            if entry.players >= self.capacity {
                return Err(ReserveError::RoomFull {
                    room: name.to_owned(),
                    capacity: self.capacity,
                });
            }
            entry.players += 1;
            return Ok(entry.handle.clone());
        }
        if rooms.len() >= self.max_rooms as usize {
            return Err(ReserveError::TooManyRooms {
                max: self.max_rooms,
            });
        }
        let times = Arc::new(RoomTimings::default());
        let handle = self.spawn(name, Arc::clone(&times));
        rooms.insert(
            name.to_owned(),
            Entry {
                handle: handle.clone(),
                players: 1,
                times,
            },
        );
        info!(room = name, "room created");
        Ok(handle)
    }

    /// Counts a player out of `name`; true if it was the last one (the room
    /// is then forgotten, and stops once it processes that player's `Leave`).
    pub fn release(&self, name: &str) -> bool {
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(name) else {
            return false;
        };
        entry.players = entry.players.saturating_sub(1);
        if entry.players == 0 {
            rooms.remove(name);
            info!(room = name, "room removed (empty)");
            true
        } else {
            false
        }
    }

    /// Every room with its player count, sorted by name.
    pub fn summaries(&self) -> Vec<RoomSummary> {
        let mut list: Vec<RoomSummary> = self
            .lock()
            .iter()
            .map(|(name, e)| RoomSummary {
                name: name.clone(),
                players: e.players,
                capacity: self.capacity,
                tick: e.times.tick.summary(),
                fanout: e.times.fanout.summary(),
                send_gap: e.times.send_gap.summary(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    fn spawn(&self, name: &str, times: Arc<RoomTimings>) -> RoomHandle<G> {
        let (commands_tx, commands_rx) = mpsc::channel(256);
        let grid = Grid::new(self.config.world_size, self.config.view_size);
        let (snapshots_tx, snapshots_rx) =
            fanout::channel(Arc::new(Snapshot::empty(G::SCHEMA, grid)));
        let seed = self
            .seeds
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let room = Room {
            name: name.to_owned(),
            game: G::new(&Settings {
                seed,
                tick_rate: self.config.tick_rate,
                world_size: self.config.world_size,
            }),
            config: self.config.clone(),
            members: BTreeMap::new(),
            tick: 0,
            snapshots: snapshots_tx,
            grid,
            world: Arc::new(World::new(G::SCHEMA)),
            cells: Arc::new(CellIndex::default()),
            warned: false,
            times: Arc::clone(&times),
            tick_interval: self.tick_interval,
        };
        tokio::spawn(room.run(commands_rx, self.tick_interval));
        RoomHandle {
            commands: commands_tx,
            snapshots: snapshots_rx,
            timings: times,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dots::{DotGame, DotInput};

    fn room() -> Room<DotGame> {
        let grid = Grid::new(500.0, 500.0);
        let (snapshots, _) = fanout::channel(Arc::new(Snapshot::empty(DotGame::SCHEMA, grid)));
        Room {
            name: "t".into(),
            game: DotGame::new(&Settings::with_seed(1)),
            config: RoomConfig {
                tick_rate: 20,
                input_buffer: 4,
                world_size: 500.0,
                view_size: 500.0,
            },
            members: BTreeMap::new(),
            tick: 0,
            snapshots,
            grid,
            world: Arc::new(World::new(DotGame::SCHEMA)),
            cells: Arc::new(CellIndex::default()),
            warned: false,
            times: Arc::new(RoomTimings::default()),
            tick_interval: Duration::from_millis(50),
        }
    }

    #[test]
    fn room_names() {
        assert!(validate_room_name("lobby").is_ok());
        assert!(validate_room_name("A-b_9").is_ok());
        assert!(validate_room_name("").is_err());
        assert!(validate_room_name(&"a".repeat(33)).is_err());
        let e = validate_room_name("a b").unwrap_err();
        assert!(e.contains("' '"), "{e}");
        assert!(validate_room_name("é").is_err());
    }

    #[test]
    fn one_input_per_tick_and_overflow_dropped() {
        let mut r = room();
        let joined = r.join(1);
        r.game.place(1, 100.0, 100.0);
        let mut accepted = 0;
        for seq in 1..=10 {
            if joined.inputs.push(seq, DotInput::steer(1.0, 0.0)) {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 4, "queue holds input_buffer inputs");
        for tick in 1..=4 {
            r.step(SystemTime::now());
            // While queued inputs remain, the ack is the last one applied.
            assert_eq!(r.snapshots.latest().ack(1), tick);
        }
        for _ in 0..6 {
            r.step(SystemTime::now());
        }
        // Four inputs, four steps, however many were sent.
        assert_eq!(r.game.position(1), Some((140.0, 100.0)));
        let snap = r.snapshots.latest().clone();
        // The dropped 5..=10 are acknowledged once the queue has drained.
        assert_eq!(snap.ack(1), 10);
        assert_eq!(snap.ack(2), 0);
        assert_eq!(snap.tick, 10);
        assert_eq!(snap.world.len(), 1);
        assert_eq!(snap.world.entities()[0].x, 140.0);
        let t = r.times.tick.summary();
        assert_eq!(t.count, 10);
        assert!(t.p50_ms <= t.p99_ms && t.p99_ms <= t.max_ms);
    }

    #[test]
    fn each_snapshot_carries_the_previous_world_as_its_delta_base() {
        let mut r = room();
        r.join(1);
        r.step(SystemTime::now());
        let first = r.snapshots.latest().clone();
        assert_eq!(first.prev.as_ref().map(|(w, _)| w.len()), Some(0));
        r.join(2);
        r.step(SystemTime::now());
        let second = r.snapshots.latest().clone();
        assert!(Arc::ptr_eq(&second.prev.as_ref().unwrap().0, &first.world));
        assert_eq!(second.world.len(), 2);
    }

    /// A registry of 20 Hz rooms with `limit` seats per room and `limit` rooms.
    fn registry(limit: u32) -> Rooms<DotGame> {
        let config = RoomConfig {
            tick_rate: 20,
            input_buffer: 4,
            world_size: 500.0,
            view_size: 500.0,
        };
        Rooms::new(limit, limit, config, Duration::from_millis(50))
    }

    /// After a short stall the room runs the missed ticks, so tick numbers
    /// stay a steady timeline; after a long one it skips ahead instead.
    #[tokio::test(start_paused = true)]
    async fn catches_up_after_short_stalls_and_skips_long_ones() {
        let rooms = registry(4);
        let handle = rooms.reserve("a").unwrap();
        let tick = || handle.snapshots.peek().tick;
        // Let the room start and run its first tick.
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        let t0 = tick();
        // A 500 ms stall: the room is not polled while time moves on.
        tokio::time::advance(Duration::from_millis(500)).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(tick() - t0, 10, "ten missed ticks run back to back");
        // A 5 s stall (100 ticks): more than the room catches up on.
        let t1 = tick();
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..200 {
            tokio::task::yield_now().await;
        }
        assert!(tick() - t1 < 5, "skipped ahead, ran {} ticks", tick() - t1);
    }

    #[tokio::test]
    async fn registry_counts_capacity_and_removal() {
        let rooms = registry(2);
        rooms.reserve("a").unwrap();
        rooms.reserve("a").unwrap();
        assert!(matches!(
            rooms.reserve("a"),
            Err(ReserveError::RoomFull { .. })
        ));
        rooms.reserve("b").unwrap();
        assert_eq!(
            rooms.reserve("c").err(),
            Some(ReserveError::TooManyRooms { max: 2 })
        );
        assert_eq!(rooms.summaries().len(), 2);
        assert!(!rooms.release("a"));
        assert!(rooms.release("a"));
        assert_eq!(rooms.summaries()[0].name, "b");
        assert!(!rooms.release("zzz"));
    }
}
