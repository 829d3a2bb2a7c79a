//! Rooms: one task per room owns its game, ticks it at a fixed rate, and
//! serves the room's clients.
//!
//! Sessions never touch the game. They send `Join`/`Leave` over the room's
//! command channel; once a session's player has joined, it hands its client
//! to the room (`Attach`, through the [`Client`] trait) and waits for it to
//! come back. Every tick the room reads all its clients (inputs go into each
//! player's small bounded queue, which the room drains at most one input per
//! player per tick; that is what makes flooding useless), ticks the game,
//! has it write the typed [`World`] into a [`Snapshot`], and writes every
//! client its message, in the order they came in. None of that waits: a
//! client with nothing to read is skipped, one whose socket is full keeps
//! its bytes and skips snapshots, and nobody can slow the room down. The
//! room never encodes anything and never asks which protocol a client
//! speaks: each client's encoder does (sharing per-tick encodings through
//! the snapshot's cache).

use std::any::Any;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, warn};

use crate::game::{Game, PlayerId, Settings};
use crate::interest::{CellIndex, Grid};
use crate::metrics::Metrics;
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

/// How far above the highest `seq` accepted so far an input's `seq` may be.
/// Honest clients count up by one per input; a larger jump is refused, so a
/// single input cannot drag the (monotonic) ack far ahead of the inputs the
/// client will really send, and pin it there.
pub const MAX_SEQ_STEP: u32 = 1024;

/// What a session gets back when it joins.
pub struct Joined<I> {
    /// Its input queue: [`InputQueue::push`] each input.
    pub inputs: InputQueue<I>,
    /// The game's world description for `welcome`.
    pub info: serde_json::Value,
}

/// A player's unapplied inputs, shared by its session (which pushes) and
/// its room (which takes at most one per tick).
///
/// A mutex around a small ring rather than a channel: each side holds it
/// for a few instructions and never across an await, the room never waits
/// for an input, and the queue and the drop mark are read together, so an
/// ack can never cover an input that is still queued. (A bounded tokio
/// `mpsc` with an atomic drop mark did the same with a semaphore, a block
/// list and a waker nobody used: 4 % of the server's CPU samples at 2,500
/// players, and a read-order subtlety to get the acks right.)
struct Pending<I> {
    queue: VecDeque<(u32, I)>,
    capacity: usize,
    /// Highest `seq` dropped because the queue was full.
    dropped: u32,
}

type SharedPending<I> = Arc<Mutex<Pending<I>>>;

fn lock<I>(pending: &SharedPending<I>) -> std::sync::MutexGuard<'_, Pending<I>> {
    // Every update is one push or pop that cannot panic halfway.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The session's end of a player's input queue.
pub struct InputQueue<I> {
    pending: SharedPending<I>,
    /// Highest `seq` accepted (queued or dropped) on this connection.
    last: u32,
    /// Client messages dropped unread (by the rate limit) since then: each
    /// may have been an input, so each lets the next `seq` go one further.
    unread: u32,
}

/// What became of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; the room applies it in a coming tick.
    Queued,
    /// Dropped: the queue was full (the client sends faster than the tick)
    /// or the room is gone. It is acknowledged all the same.
    Dropped,
}

/// An input whose `seq` jumps more than [`MAX_SEQ_STEP`] above the highest
/// one accepted so far (plus one per message dropped unread since); it was
/// neither applied nor acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqJump {
    pub seq: u32,
    /// The highest `seq` accepted so far (0 before the first input).
    pub last: u32,
    /// The largest `seq` that would have been accepted.
    pub max: u32,
}

impl std::fmt::Display for SeqJump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid `input` message: seq {} jumps too far ahead; seq counts up by one per input, and may be at most {MAX_SEQ_STEP} above the highest seq so far ({}), so at most {}",
            self.seq, self.last, self.max
        )
    }
}

impl std::error::Error for SeqJump {}

impl<I> InputQueue<I> {
    /// Queues one tick of input, or drops it if the queue is full (the
    /// client sends faster than the tick) or the room is gone. Refuses a
    /// `seq` more than [`MAX_SEQ_STEP`] above the highest one so far.
    ///
    /// A dropped input is acknowledged once the inputs queued before it are
    /// applied, so a client never waits for an ack that cannot come and
    /// replays a dropped input for ever.
    pub fn push(&mut self, seq: u32, input: I) -> Result<Pushed, SeqJump> {
        let max = self
            .last
            .saturating_add(MAX_SEQ_STEP)
            .saturating_add(self.unread);
        if seq > max {
            return Err(SeqJump {
                seq,
                last: self.last,
                max,
            });
        }
        self.last = self.last.max(seq);
        self.unread = 0;
        let mut pending = lock(&self.pending);
        if pending.queue.len() < pending.capacity {
            pending.queue.push_back((seq, input));
            Ok(Pushed::Queued)
        } else {
            pending.dropped = pending.dropped.max(seq);
            Ok(Pushed::Dropped)
        }
    }
}

impl<I> InputQueue<I> {
    /// The highest `seq` accepted so far (0 before the first input). A
    /// resumed client goes on counting above it.
    pub fn last_seq(&self) -> u32 {
        self.last
    }

    /// Records a client message dropped without being read (over the rate
    /// limit). It may have been an input whose `seq` the client counted, so
    /// the next `seq` may be one further ahead.
    pub fn unread(&mut self) {
        self.unread = self.unread.saturating_add(1);
    }
}

/// A connected client, served by its room's task.
///
/// The room reads every client just before it ticks and writes each one its
/// snapshot right after, in the order they came in, all on its own task. A
/// client costs no task wake-up, no timer and no channel per tick: with one
/// task per connection woken per snapshot and per message, that machinery
/// (wakers, readiness, `select!`) was most of the server's user-space CPU
/// with thousands of clients. Reads and writes never wait: a client that
/// has sent nothing is skipped, and one whose socket is full keeps its bytes
/// until a later tick (it skips snapshots meanwhile). The session that
/// attached a client gets it back through [`Client::finish`] when it is done,
/// and does whatever needs waiting (a close handshake) on its own task.
///
/// The room knows no protocol and no session: the `session` module
/// implements this.
pub trait Client: Send {
    /// Takes in what the client sent since the last tick. `false` when the
    /// client is done (it knows why).
    fn read(&mut self) -> bool;
    /// Sends the client `snapshot`. `false` when the client is done.
    fn write(&mut self, snapshot: &Arc<Snapshot>) -> bool;
    /// Hands the client back to its session: done, or let go because the
    /// room stops.
    fn finish(self: Box<Self>, why: Release);
}

/// Why a room hands a client back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The client said it is done (`read` or `write` returned `false`).
    Done,
    /// The room stopped under it: its game panicked.
    RoomFailed,
}

/// Messages from sessions to their room.
pub enum Command<G: Game> {
    Join {
        player: PlayerId,
        reply: oneshot::Sender<Joined<G::Input>>,
    },
    /// Serve this client from now on, until it is done.
    Attach(Box<dyn Client>),
    /// `last` is decided by the registry: the room stops after the last player leaves.
    Leave { player: PlayerId, last: bool },
}

/// A session's way into a room.
pub struct RoomHandle<G: Game> {
    /// Unbounded, so that a seat can send its `Leave` from `Drop`. Every
    /// command belongs to a seat (one `Join` and one `Leave` each), and seats
    /// are bounded by the room's capacity, so this cannot grow without bound.
    pub commands: mpsc::UnboundedSender<Command<G>>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
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
    /// Shared with the session's [`InputQueue`].
    inputs: SharedPending<I>,
    /// Every input with `seq <= ack` has been applied or dropped. Never
    /// goes down.
    ack: u32,
}

impl<I> Member<I> {
    /// The next queued input, if any, and the ack that goes with it. When
    /// the queue is empty, the inputs dropped so far are done with too.
    fn take(&mut self) -> Option<I> {
        let mut pending = lock(&self.inputs);
        match pending.queue.pop_front() {
            Some((seq, input)) => {
                // The maximum: a client that sends a smaller seq after a
                // larger one does not take its ack back.
                self.ack = self.ack.max(seq);
                Some(input)
            }
            None => {
                self.ack = self.ack.max(pending.dropped);
                None
            }
        }
    }
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
    snapshots: watch::Sender<Arc<Snapshot>>,
    /// The grid clients' views are made of.
    grid: Grid,
    /// The last published world and its cells: the base of the next delta.
    world: Arc<World>,
    cells: Arc<CellIndex>,
    /// Whether the game's replication errors were logged already (once per room).
    warned: bool,
    times: Arc<RoomTimings>,
    tick_interval: Duration,
    metrics: Arc<Metrics>,
    /// The connections this room serves, in the order they came in: the
    /// order they are written to, so a client's snapshot leaves at about the
    /// same moment of every tick.
    clients: Vec<Box<dyn Client>>,
    /// The other half of `clients`' double buffer (see [`Room::serve`]).
    spare: Vec<Box<dyn Client>>,
    /// The clients were read on an earlier tick of this catch-up burst (see
    /// [`Room::step`]).
    read_in_burst: bool,
}

impl<G: Game> Room<G> {
    fn join(&mut self, player: PlayerId) -> Joined<G::Input> {
        let capacity = self.config.input_buffer.max(1);
        let pending = Arc::new(Mutex::new(Pending {
            queue: VecDeque::with_capacity(capacity),
            capacity,
            dropped: 0,
        }));
        self.game.join(player);
        self.members.insert(
            player,
            Member {
                inputs: Arc::clone(&pending),
                ack: 0,
            },
        );
        Joined {
            inputs: InputQueue {
                pending,
                last: 0,
                unread: 0,
            },
            info: serde_json::to_value(self.game.info()).unwrap_or_default(),
        }
    }

    fn leave(&mut self, player: PlayerId) {
        self.members.remove(&player);
        self.game.leave(player);
    }

    /// Runs `op` on every client, in order. Those done are handed back to
    /// their sessions; one that panicked (a bug: nothing a client sends
    /// should cause one) is dropped with its socket, and only it: its
    /// session sees it gone and lets its player go.
    fn serve(&mut self, mut op: impl FnMut(&mut dyn Client) -> bool) {
        let mut kept = std::mem::take(&mut self.spare);
        for mut client in self.clients.drain(..) {
            match std::panic::catch_unwind(AssertUnwindSafe(|| op(&mut *client))) {
                Ok(true) => kept.push(client),
                Ok(false) => client.finish(Release::Done),
                Err(panic) => error!(
                    room = %self.name,
                    panic = %panic_message(&*panic),
                    "serving a client panicked (a bug); its connection was dropped"
                ),
            }
        }
        self.spare = std::mem::replace(&mut self.clients, kept);
    }

    /// Hands every client back with `why` (the room stops).
    fn release_all(&mut self, why: Release) {
        for client in self.clients.drain(..) {
            client.finish(why);
        }
    }

    /// One tick: read the clients, at most one input per player, advance,
    /// publish, write the clients.
    ///
    /// A room catching up after a stall (the next tick is due already)
    /// reads its clients on the first tick of the burst, so the inputs that
    /// piled up during the stall are taken one per tick by the burst's ticks
    /// (as the ticks they were meant for), and writes them only on its last
    /// tick: the snapshots in between would be stale before they arrived.
    fn step(&mut self, now: SystemTime, behind: bool) {
        if !self.read_in_burst {
            self.serve(|client| client.read());
        }
        let snapshot = self.advance(now);
        if behind {
            self.read_in_burst = true;
            return;
        }
        self.read_in_burst = false;
        self.serve(|client| client.write(&snapshot));
    }

    /// The game's part of a tick: at most one input per player, advance,
    /// publish. Its duration is the tick time.
    fn advance(&mut self, now: SystemTime) -> Arc<Snapshot> {
        let started = std::time::Instant::now();
        for (&player, member) in &mut self.members {
            if let Some(input) = member.take() {
                self.game.input(player, input);
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
        // Kept for observers of the room (tests, spectators); the room's
        // own clients get it from `step`.
        let snapshot = Arc::new(snapshot);
        self.snapshots.send_replace(Arc::clone(&snapshot));
        let took = started.elapsed();
        self.times.tick.record(took, self.tick_interval);
        self.metrics.tick_seconds.observe(took.as_secs_f64());
        if took > self.tick_interval {
            self.metrics.ticks_overrun.inc();
        }
        snapshot
    }

    async fn run(&mut self, commands: &mut mpsc::UnboundedReceiver<Command<G>>) {
        let tick_interval = self.tick_interval;
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
                        // If the session gave up while joining, its seat's
                        // `Leave` follows this `Join`.
                        let _ = reply.send(joined);
                    }
                    Some(Command::Attach(client)) => self.clients.push(client),
                    Some(Command::Leave { player, last }) => {
                        self.leave(player);
                        if last {
                            break;
                        }
                    }
                    None => break,
                },
                scheduled = ticker.tick() => {
                    let lag = scheduled.elapsed();
                    // Another tick is due already: this one is part of a
                    // catch-up burst (see `step`).
                    let behind = if lag > max_lag {
                        warn!(room = %self.name, ?lag, "room fell too far behind; skipping missed ticks");
                        ticker.reset();
                        false
                    } else {
                        lag >= tick_interval
                    };
                    self.step(SystemTime::now(), behind);
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
    /// Tells this room apart from an earlier or later one of the same name.
    id: u64,
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

/// The rooms by name, shared by the registry, every [`Seat`] and every room
/// task (which removes its own entry if its game panics).
struct Registry<G: Game> {
    rooms: Mutex<HashMap<String, Entry<G>>>,
}

impl<G: Game> Registry<G> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<G>>> {
        // The map stays consistent even if a holder panicked: every update is
        // one call that cannot panic halfway.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a player out of room `id`; true if it was the last one (the
    /// room is then forgotten, and stops once it processes that player's
    /// `Leave`). A room that is gone already (its game panicked) is left
    /// alone, and so is a newer room of the same name.
    fn release(&self, name: &str, id: u64) -> bool {
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(name).filter(|e| e.id == id) else {
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

    /// Forgets room `id` at once, whoever is still in it. Returns how many
    /// players it had.
    fn forget(&self, name: &str, id: u64) -> Option<u32> {
        let mut rooms = self.lock();
        if rooms.get(name).is_some_and(|e| e.id == id) {
            rooms.remove(name).map(|e| e.players)
        } else {
            None
        }
    }
}

/// One player's place in a room, from [`Rooms::reserve`] until it is dropped.
///
/// Dropping it (however the session ends: return, error or panic) counts
/// the player out of the registry and, once [`Seat::join`] was called,
/// tells the room the player left. Nothing has to remember to do it by hand,
/// so a session that panics cannot leak a seat.
pub struct Seat<G: Game> {
    registry: Arc<Registry<G>>,
    room: String,
    id: u64,
    handle: RoomHandle<G>,
    player: Option<PlayerId>,
}

impl<G: Game> Seat<G> {
    /// The room's channels.
    pub fn handle(&self) -> &RoomHandle<G> {
        &self.handle
    }

    /// The room's name.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Adds `player` to the room's game. From here on, dropping the seat
    /// also removes the player from the game. `None` if the room stopped
    /// (its game panicked).
    pub async fn join(&mut self, player: PlayerId) -> Option<Joined<G::Input>> {
        self.player = Some(player);
        let (reply, joined) = oneshot::channel();
        self.handle
            .commands
            .send(Command::Join { player, reply })
            .ok()?;
        joined.await.ok()
    }
}

impl<G: Game> Drop for Seat<G> {
    fn drop(&mut self) {
        let last = self.registry.release(&self.room, self.id);
        if let Some(player) = self.player {
            // If the room is gone there is nothing to leave.
            let _ = self.handle.commands.send(Command::Leave { player, last });
        }
    }
}

/// All rooms of a server, by name.
///
/// Player counts are kept here, under one lock, so that "is it full", "create
/// it" and "was that the last player" are decided atomically; the room task
/// learns from `Leave { last }` when to stop.
pub struct Rooms<G: Game> {
    registry: Arc<Registry<G>>,
    capacity: u32,
    max_rooms: u32,
    config: RoomConfig,
    tick_interval: Duration,
    /// Feeds each new room's game RNG a different seed.
    seeds: AtomicU64,
    /// Tells rooms of the same name apart.
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl<G: Game> Rooms<G> {
    pub fn new(
        capacity: u32,
        max_rooms: u32,
        config: RoomConfig,
        tick_interval: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let seed = unix_millis(SystemTime::now()) as u64;
        Rooms {
            registry: Arc::new(Registry {
                rooms: Mutex::new(HashMap::new()),
            }),
            capacity,
            max_rooms,
            config,
            tick_interval,
            seeds: AtomicU64::new(seed),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    /// Counts a player into `name`, creating and starting the room if
    /// needed; the player is counted out when the [`Seat`] is dropped.
    /// Must be called within a tokio runtime.
    pub fn reserve(&self, name: &str) -> Result<Seat<G>, ReserveError> {
        let mut rooms = self.registry.lock();
        if let Some(entry) = rooms.get_mut(name) {
            if entry.players >= self.capacity {
                return Err(ReserveError::RoomFull {
                    room: name.to_owned(),
                    capacity: self.capacity,
                });
            }
            entry.players += 1;
            return Ok(Seat {
                registry: Arc::clone(&self.registry),
                room: name.to_owned(),
                id: entry.id,
                handle: entry.handle.clone(),
                player: None,
            });
        }
        if rooms.len() >= self.max_rooms as usize {
            return Err(ReserveError::TooManyRooms {
                max: self.max_rooms,
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let times = Arc::new(RoomTimings::default());
        let handle = self.spawn(name, id, Arc::clone(&times));
        rooms.insert(
            name.to_owned(),
            Entry {
                id,
                handle: handle.clone(),
                players: 1,
                times,
            },
        );
        info!(room = name, "room created");
        Ok(Seat {
            registry: Arc::clone(&self.registry),
            room: name.to_owned(),
            id,
            handle,
            player: None,
        })
    }

    /// Every room's name and player count, unsorted (cheaper than
    /// [`Rooms::summaries`]).
    pub fn player_counts(&self) -> Vec<(String, u32)> {
        self.registry
            .lock()
            .iter()
            .map(|(name, e)| (name.clone(), e.players))
            .collect()
    }

    /// Every room with its player count, sorted by name.
    pub fn summaries(&self) -> Vec<RoomSummary> {
        let mut list: Vec<RoomSummary> = self
            .registry
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

    fn spawn(&self, name: &str, id: u64, times: Arc<RoomTimings>) -> RoomHandle<G> {
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let grid = Grid::new(self.config.world_size, self.config.view_size);
        let (snapshots_tx, snapshots_rx) =
            watch::channel(Arc::new(Snapshot::empty(G::SCHEMA, grid)));
        let seed = self
            .seeds
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let parts = RoomParts {
            name: name.to_owned(),
            id,
            settings: Settings {
                seed,
                tick_rate: self.config.tick_rate,
                world_size: self.config.world_size,
            },
            config: self.config.clone(),
            snapshots: snapshots_tx,
            grid,
            times: Arc::clone(&times),
            tick_interval: self.tick_interval,
            metrics: Arc::clone(&self.metrics),
        };
        tokio::spawn(supervise(parts, commands_rx, Arc::clone(&self.registry)));
        RoomHandle {
            commands: commands_tx,
            snapshots: snapshots_rx,
            timings: times,
        }
    }
}

/// Everything a room task starts with, except its game.
struct RoomParts {
    name: String,
    id: u64,
    settings: Settings,
    config: RoomConfig,
    snapshots: watch::Sender<Arc<Snapshot>>,
    grid: Grid,
    times: Arc<RoomTimings>,
    tick_interval: Duration,
    metrics: Arc<Metrics>,
}

/// Runs a room, and contains a panic of its game.
///
/// A game that panics (in `new`, `join`, `input`, `tick`, `replicate`, ...)
/// leaves its state in no known condition, so the room is not resumed: the
/// panic is logged through `tracing` with the room's name, the room is
/// removed from the registry, and only then is it dropped. Dropping it
/// closes its snapshot channel, and its sessions close their clients with
/// 1011; a client that reconnects gets a fresh room of the same name.
async fn supervise<G: Game>(
    parts: RoomParts,
    commands: mpsc::UnboundedReceiver<Command<G>>,
    registry: Arc<Registry<G>>,
) {
    let (name, id) = (parts.name.clone(), parts.id);
    let failed = |ticks: u64, panic: Box<dyn Any + Send>| {
        let players = registry.forget(&name, id).unwrap_or(0);
        error!(
            room = %name,
            players,
            ticks,
            panic = %panic_message(&*panic),
            "the game panicked; room removed, its players are disconnected (close 1011)"
        );
    };
    let settings = parts.settings;
    let game = match std::panic::catch_unwind(AssertUnwindSafe(|| G::new(&settings))) {
        Ok(game) => game,
        Err(panic) => return failed(0, panic),
    };
    let mut room = Room {
        name: parts.name,
        game,
        config: parts.config,
        members: BTreeMap::new(),
        tick: 0,
        snapshots: parts.snapshots,
        grid: parts.grid,
        world: Arc::new(World::new(G::SCHEMA)),
        cells: Arc::new(CellIndex::default()),
        warned: false,
        times: parts.times,
        tick_interval: parts.tick_interval,
        metrics: parts.metrics,
        clients: Vec::new(),
        spare: Vec::new(),
        read_in_burst: false,
    };
    let mut commands = commands;
    // Unconstrained by tokio's cooperative budget: serving its clients is
    // thousands of socket operations per tick, and past the budget (128)
    // every one of them would report "not ready" until the task yields.
    // The room yields anyway, between ticks.
    let outcome = AssertUnwindSafe(tokio::task::unconstrained(room.run(&mut commands)))
        .catch_unwind()
        .await;
    if let Err(panic) = outcome {
        failed(room.tick, panic);
    }
    // Its clients go back to their sessions, which close them (1011), after
    // the registry forgot the room; so do clients still on their way in.
    room.release_all(Release::RoomFailed);
    commands.close();
    while let Ok(command) = commands.try_recv() {
        if let Command::Attach(client) = command {
            client.finish(Release::RoomFailed);
        }
    }
    // `room` is dropped here.
}

/// The text of a panic, for the log.
pub fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(a panic without a message)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dots::{DotGame, DotInput};

    /// A room of game `G` outside any task, for stepping by hand.
    fn test_room<G: Game>(name: &str, input_buffer: usize) -> Room<G> {
        let grid = Grid::new(500.0, 500.0);
        let (snapshots, _) = watch::channel(Arc::new(Snapshot::empty(G::SCHEMA, grid)));
        Room {
            name: name.into(),
            game: G::new(&Settings::with_seed(1)),
            config: RoomConfig {
                tick_rate: 20,
                input_buffer,
                world_size: 500.0,
                view_size: 500.0,
            },
            members: BTreeMap::new(),
            tick: 0,
            snapshots,
            grid,
            world: Arc::new(World::new(G::SCHEMA)),
            cells: Arc::new(CellIndex::default()),
            warned: false,
            times: Arc::new(RoomTimings::default()),
            tick_interval: Duration::from_millis(50),
            metrics: Arc::new(Metrics::new()),
            clients: Vec::new(),
            spare: Vec::new(),
            read_in_burst: false,
        }
    }

    fn room() -> Room<DotGame> {
        test_room("t", 4)
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
        let mut joined = r.join(1);
        r.game.place(1, 100.0, 100.0);
        let mut accepted = 0;
        for seq in 1..=10 {
            if joined.inputs.push(seq, DotInput::steer(1.0, 0.0)) == Ok(Pushed::Queued) {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 4, "queue holds input_buffer inputs");
        for tick in 1..=4 {
            r.step(SystemTime::now(), false);
            // While queued inputs remain, the ack is the last one applied.
            assert_eq!(r.snapshots.borrow().ack(1), tick);
        }
        for _ in 0..6 {
            r.step(SystemTime::now(), false);
        }
        // Four inputs, four steps, however many were sent.
        assert_eq!(r.game.position(1), Some((140.0, 100.0)));
        let snap = r.snapshots.borrow().clone();
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
        r.step(SystemTime::now(), false);
        let first = r.snapshots.borrow().clone();
        assert_eq!(first.prev.as_ref().map(|(w, _)| w.len()), Some(0));
        r.join(2);
        r.step(SystemTime::now(), false);
        let second = r.snapshots.borrow().clone();
        assert!(Arc::ptr_eq(&second.prev.as_ref().unwrap().0, &first.world));
        assert_eq!(second.world.len(), 2);
    }

    /// Counts how often the room reads and writes it.
    struct Counting(Arc<[AtomicU64; 2]>);

    impl Client for Counting {
        fn read(&mut self) -> bool {
            self.0[0].fetch_add(1, Ordering::Relaxed);
            true
        }
        fn write(&mut self, _: &Arc<Snapshot>) -> bool {
            self.0[1].fetch_add(1, Ordering::Relaxed);
            true
        }
        fn finish(self: Box<Self>, _: Release) {}
    }

    /// A catch-up burst reads its clients on its first tick (so the inputs
    /// that piled up feed the burst's ticks) and writes them on its last.
    #[test]
    fn a_burst_reads_first_and_writes_last() {
        let mut r = room();
        let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        r.clients.push(Box::new(Counting(Arc::clone(&counts))));
        let seen = || {
            (
                counts[0].load(Ordering::Relaxed),
                counts[1].load(Ordering::Relaxed),
            )
        };
        r.step(SystemTime::now(), false);
        assert_eq!(seen(), (1, 1));
        for _ in 0..3 {
            r.step(SystemTime::now(), true);
        }
        assert_eq!(seen(), (2, 1), "read once, on the burst's first tick");
        r.step(SystemTime::now(), false);
        assert_eq!(seen(), (2, 2), "written on its last tick");
        assert_eq!(r.tick, 5);
        r.step(SystemTime::now(), false);
        assert_eq!(seen(), (3, 3));
    }

    /// A registry of 20 Hz rooms with `limit` seats per room and `limit` rooms.
    fn registry(limit: u32) -> Rooms<DotGame> {
        let config = RoomConfig {
            tick_rate: 20,
            input_buffer: 4,
            world_size: 500.0,
            view_size: 500.0,
        };
        Rooms::new(
            limit,
            limit,
            config,
            Duration::from_millis(50),
            Arc::new(Metrics::new()),
        )
    }

    /// After a short stall the room runs the missed ticks, so tick numbers
    /// stay a steady timeline; after a long one it skips ahead instead.
    #[tokio::test(start_paused = true)]
    async fn catches_up_after_short_stalls_and_skips_long_ones() {
        let rooms = registry(4);
        let seat = rooms.reserve("a").unwrap();
        let tick = || seat.handle().snapshots.borrow().tick;
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
        let a1 = rooms.reserve("a").unwrap();
        let a2 = rooms.reserve("a").unwrap();
        assert!(matches!(
            rooms.reserve("a"),
            Err(ReserveError::RoomFull { .. })
        ));
        let _b = rooms.reserve("b").unwrap();
        assert_eq!(
            rooms.reserve("c").err(),
            Some(ReserveError::TooManyRooms { max: 2 })
        );
        assert_eq!(rooms.summaries().len(), 2);
        drop(a1);
        assert_eq!(rooms.summaries()[0].players, 1);
        drop(a2);
        assert_eq!(rooms.summaries().len(), 1);
        assert_eq!(rooms.summaries()[0].name, "b");
    }

    /// A seat is given back by its guard, also when its holder panics.
    #[tokio::test]
    async fn a_seat_is_released_when_its_holder_panics() {
        let rooms = registry(1);
        let unwound = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _seat = rooms.reserve("a").unwrap();
            panic!("a session bug");
        }));
        assert!(unwound.is_err());
        assert!(rooms.summaries().is_empty(), "the seat leaked");
        // Capacity 1: the seat is free again.
        let _seat = rooms.reserve("a").unwrap();
    }

    /// Applies one input per tick; the input is its own seq, so a test can
    /// tell which were applied. Panics on input 13.
    struct Probe {
        applied: Vec<u32>,
    }

    static PROBE_SCHEMA: crate::replicate::Schema = crate::replicate::Schema {
        collection: "probes",
        fields: &[],
    };

    impl Game for Probe {
        type Input = u32;
        type Info = ();
        const SCHEMA: &'static crate::replicate::Schema = &PROBE_SCHEMA;
        fn new(_: &Settings) -> Self {
            Probe {
                applied: Vec::new(),
            }
        }
        fn join(&mut self, _: PlayerId) {}
        fn leave(&mut self, _: PlayerId) {}
        fn input(&mut self, _: PlayerId, input: u32) {
            assert_ne!(input, 13, "the probe game fails on input 13");
            self.applied.push(input);
        }
        fn tick(&mut self) {}
        fn replicate(&self, _: &mut World) {}
        fn info(&self) {}
    }

    fn probe_room(input_buffer: usize) -> Room<Probe> {
        test_room("p", input_buffer)
    }

    fn ack(r: &Room<Probe>) -> u32 {
        r.snapshots.borrow().ack(1)
    }

    /// The ack is the highest seq done with, not the last one applied: a
    /// smaller seq after a larger one does not take it back.
    #[test]
    fn acks_never_go_backwards() {
        let mut r = probe_room(4);
        let mut q = r.join(1).inputs;
        q.push(10, 10).unwrap();
        r.step(SystemTime::now(), false);
        assert_eq!(ack(&r), 10);
        q.push(5, 5).unwrap();
        r.step(SystemTime::now(), false);
        assert_eq!(r.game.applied, [10, 5], "applied all the same");
        assert_eq!(ack(&r), 10, "the ack went backwards");
        r.step(SystemTime::now(), false);
        assert_eq!(ack(&r), 10);
    }

    /// One input with seq u32::MAX, sent while the queue is full, used to
    /// pin the ack at u32::MAX for ever. It is refused now, and the ack
    /// follows the inputs that are really sent.
    #[test]
    fn a_seq_that_jumps_too_far_is_refused() {
        let mut r = probe_room(4);
        let mut q = r.join(1).inputs;
        for seq in 1..=4 {
            assert_eq!(q.push(seq, seq), Ok(Pushed::Queued));
        }
        assert_eq!(q.push(5, 5), Ok(Pushed::Dropped));
        let e = q.push(u32::MAX, 0).unwrap_err();
        assert_eq!(
            e,
            SeqJump {
                seq: u32::MAX,
                last: 5,
                max: 5 + MAX_SEQ_STEP
            }
        );
        let text = e.to_string();
        assert!(
            text.contains("4294967295") && text.contains("1029"),
            "{text}"
        );
        for _ in 0..6 {
            r.step(SystemTime::now(), false);
        }
        assert_eq!(ack(&r), 5, "the refused seq is never acknowledged");
        assert_eq!(r.game.applied, [1, 2, 3, 4]);
        // The bound moves with the highest seq accepted: exactly at it is fine.
        assert_eq!(q.push(5 + MAX_SEQ_STEP, 6), Ok(Pushed::Queued));
        assert!(q.push(5 + 2 * MAX_SEQ_STEP + 1, 7).is_err());
        r.step(SystemTime::now(), false);
        assert_eq!(ack(&r), 5 + MAX_SEQ_STEP);
        // Messages the rate limit dropped unread may have been inputs: each
        // lets the next seq go one further (once).
        let last = 5 + MAX_SEQ_STEP;
        for _ in 0..500 {
            q.unread();
        }
        assert!(q.push(last + MAX_SEQ_STEP + 501, 8).is_err());
        assert!(q.push(last + MAX_SEQ_STEP + 500, 8).is_ok());
        assert!(q.push(last + 2 * MAX_SEQ_STEP + 501, 9).is_err(), "used up");
        // Near the top of the range the bound saturates instead of overflowing.
        let mut q2 = probe_room(4).join(1).inputs;
        q2.last = u32::MAX - 3;
        assert!(q2.push(u32::MAX, 0).is_ok());
    }

    /// Drops are acknowledged only once every input queued before them was
    /// applied: a refill after the queue drained waits for the next ticks.
    /// (The queue and the drop mark are read under one lock, so there is no
    /// moment in between for a refill to slip into; with a channel and an
    /// atomic mark, read the wrong way round, 6 was once acknowledged with 4
    /// and 5 still queued.)
    #[test]
    fn a_refill_is_never_acknowledged_early() {
        let mut r = probe_room(2);
        let mut q = r.join(1).inputs;
        for seq in 1..=3 {
            q.push(seq, seq).unwrap();
        }
        let m = r.members.get_mut(&1).unwrap();
        assert_eq!(m.take(), Some(1));
        assert_eq!(m.take(), Some(2));
        assert_eq!(m.take(), None);
        assert_eq!(m.ack, 3, "3 was dropped after 1 and 2, which are applied");
        assert_eq!(q.push(4, 4), Ok(Pushed::Queued));
        assert_eq!(q.push(5, 5), Ok(Pushed::Queued));
        assert_eq!(q.push(6, 6), Ok(Pushed::Dropped));
        let m = r.members.get_mut(&1).unwrap();
        assert_eq!(m.ack, 3, "not 6: 4 and 5 are queued");
        assert_eq!((m.take(), m.ack), (Some(4), 4));
        assert_eq!((m.take(), m.ack), (Some(5), 5));
        assert_eq!((m.take(), m.ack), (None, 6));
    }

    /// A game that panics: logged, its room removed from the registry, its
    /// sessions' snapshot channel closed (they close with 1011). Its old
    /// seats, dropped later, do not touch a new room of the same name.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_game_is_removed_and_its_seats_go_quietly() {
        let rooms: Rooms<Probe> = Rooms::new(
            4,
            4,
            RoomConfig {
                tick_rate: 20,
                input_buffer: 4,
                world_size: 500.0,
                view_size: 500.0,
            },
            Duration::from_millis(50),
            Arc::new(Metrics::new()),
        );
        let mut doomed = rooms.reserve("a").unwrap();
        let mut other = rooms.reserve("a").unwrap();
        let mut late = rooms.reserve("a").unwrap();
        let mut snapshots = doomed.handle().snapshots.clone();
        let mut q = doomed.join(1).await.unwrap().inputs;
        let _q2 = other.join(2).await.unwrap().inputs;
        q.push(1, 13).unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while snapshots.changed().await.is_ok() {}
        })
        .await;
        assert!(closed.is_ok(), "the dead room's channel never closed");
        assert!(
            rooms.summaries().is_empty(),
            "the dead room is still listed"
        );
        // A seat taken before the panic cannot join any more: `None`, not a hang.
        assert!(late.join(3).await.is_none());
        // Joining the same name gets a fresh room, which the old seats'
        // guards leave alone.
        let fresh = rooms.reserve("a").unwrap();
        drop((doomed, other, late));
        let list = rooms.summaries();
        assert_eq!((list.len(), list[0].players), (1, 1));
        let mut fresh_snapshots = fresh.handle().snapshots.clone();
        assert!(
            fresh_snapshots.changed().await.is_ok(),
            "the fresh room ticks"
        );
    }

    #[test]
    fn panic_messages() {
        let p = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(&*p), "plain");
        let n = 3;
        let p = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(&*p), "formatted 3");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(&*p), "(a panic without a message)");
    }
}
