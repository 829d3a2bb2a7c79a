//! Per-session encoders: what one client receives for a room's [`Snapshot`].
//!
//! The session owns its encoder, so the room never needs to know which
//! protocols its clients speak. What all clients of one encoding share is
//! encoded once per tick into the snapshot's cache: the seed message and the
//! native `state` JSON while everyone sees everything, and the binary
//! per-cell [`Pieces`]. Per client there is a small header (tick, ack, base,
//! own position), the choice of cells, and a copy.

use std::sync::Arc;

use bytes::Bytes;

use crate::game::PlayerId;
use crate::interest::CellId;
use crate::replicate::World;
use crate::snapshot::Snapshot;
use crate::ws::{self, Message, Shared};

use super::pieces::{assemble, Pieces, View};
use super::{bin, encode, json, Protocol};

const SLOT_SEED: usize = 0;
const SLOT_JSON_STATE: usize = 1;
const SLOT_BIN_PIECES: usize = 2;

/// Side of the seed client's canvas: in a larger world a seed client is
/// shown the 500 x 500 window around its dot (see `docs/PROTOCOL.md`).
pub const SEED_WINDOW: f64 = 500.0;

/// One client's message for a snapshot.
#[derive(Debug, Clone)]
pub enum Outgoing<'a> {
    /// Built for this client.
    Message(Message),
    /// The same for every client of its kind (a full state), framed once.
    Shared(Arc<Shared>),
    /// Built and framed for this client in its encoder's buffer (see
    /// [`ws::frame_in_place`]): the whole frame, payload from `payload`.
    Framed { frame: &'a [u8], payload: usize },
}

impl Outgoing<'_> {
    /// As a plain message.
    pub fn into_message(self) -> Message {
        match self {
            Outgoing::Message(msg) => msg,
            Outgoing::Shared(shared) => shared.message(),
            Outgoing::Framed { frame, payload } => Message::Binary(Bytes::copy_from_slice(
                frame.get(payload..).unwrap_or_default(),
            )),
        }
    }
}

/// Turns snapshots into one client's messages, remembering what that client
/// already has: the binary protocol's delta baseline and view.
#[derive(Debug)]
pub struct Encoder {
    protocol: Protocol,
    /// The tick of the last snapshot sent: the client's baseline. A delta is
    /// only ever built against this; a client that skipped a tick (slow
    /// reader, catch-up burst) gets a full snapshot instead.
    last: Option<u64>,
    /// The own entity's exact position as last sent (binary only), so it is
    /// only sent again when it changes.
    own: Option<(f64, f64)>,
    /// The cells the client saw in the last snapshot sent, ascending.
    cells: Vec<CellId>,
    /// The cells it sees now (reused buffer).
    now: Vec<CellId>,
    /// Entity indices in view (reused buffer).
    only: Vec<u32>,
    /// The binary message being built, framed in place (reused buffer).
    out: Vec<u8>,
}

/// The own entity's exact position (the entity whose id is the player's).
fn own_position(world: &World, player: PlayerId) -> Option<(f64, f64)> {
    world
        .index_of(player)
        .and_then(|i| world.entities().get(i))
        .map(|e| (e.x, e.y))
}

impl Encoder {
    pub fn new(protocol: Protocol) -> Self {
        Encoder {
            protocol,
            last: None,
            own: None,
            cells: Vec::new(),
            now: Vec::new(),
            only: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Forgets what the client has: the message just built never reached
    /// it, so the next one must not be a delta against it.
    pub fn forget(&mut self) {
        self.last = None;
        self.own = None;
    }

    /// The message carrying `snap` to `player`; `None` for the placeholder a
    /// room starts with (tick 0), which has nothing to show yet.
    pub fn snapshot(&mut self, snap: &Snapshot, player: PlayerId) -> Option<Outgoing<'_>> {
        if snap.tick == 0 {
            return None;
        }
        let exact = own_position(&snap.world, player);
        let msg = match self.protocol {
            Protocol::Seed => self.seed(snap, exact),
            Protocol::NativeJson => Outgoing::Message(self.json(snap, player, exact)),
            Protocol::NativeBin => {
                let start = self.bin(snap, player, exact);
                self.last = Some(snap.tick);
                let frame = self.out.get(start..).unwrap_or_default();
                let payload = ws::FRAME_HEADER_ROOM - start;
                return Some(Outgoing::Framed { frame, payload });
            }
        };
        self.last = Some(snap.tick);
        Some(msg)
    }

    /// The cells in view: around the own entity, or everything without one.
    fn choose_cells(&mut self, snap: &Snapshot, exact: Option<(f64, f64)>) {
        match exact {
            Some((x, y)) if !snap.grid.sees_all() => snap.grid.view_cells(x, y, &mut self.now),
            _ => snap.grid.all_cells(&mut self.now),
        }
    }

    /// Entity indices in the current cells (or in `rect` of them), in id order.
    fn entities_in_view(&mut self, snap: &Snapshot, rect: Option<((f64, f64), (f64, f64))>) {
        self.only.clear();
        for &c in &self.now {
            for &i in snap.cells.in_cell(c) {
                let inside = rect.is_none_or(|((x0, y0), (x1, y1))| {
                    snap.world
                        .entities()
                        .get(i as usize)
                        .is_some_and(|e| e.x >= x0 && e.x < x1 && e.y >= y0 && e.y < y1)
                });
                if inside {
                    self.only.push(i);
                }
            }
        }
        self.only.sort_unstable();
    }

    fn seed(&mut self, snap: &Snapshot, exact: Option<(f64, f64)>) -> Outgoing<'static> {
        let world_size = snap.grid.world;
        let (Some((x, y)), true) = (exact, world_size > SEED_WINDOW) else {
            return Outgoing::Shared(shared_text(snap, SLOT_SEED, || {
                serde_json::to_string(&json::SeedState {
                    world: &snap.world,
                    only: None,
                    origin: (0.0, 0.0),
                })
                .unwrap_or_default()
            }));
        };
        // Whole-pixel origin, so the seed's whole positions stay whole.
        let corner = |v: f64| {
            (v - SEED_WINDOW / 2.0)
                .clamp(0.0, world_size - SEED_WINDOW)
                .floor()
        };
        let (x0, y0) = (corner(x), corner(y));
        let rect = ((x0, y0), (x0 + SEED_WINDOW, y0 + SEED_WINDOW));
        snap.grid.rect_cells(rect.0, rect.1, &mut self.now);
        self.entities_in_view(snap, Some(rect));
        let text = serde_json::to_string(&json::SeedState {
            world: &snap.world,
            only: Some(&self.only),
            origin: (x0, y0),
        })
        .unwrap_or_default();
        Outgoing::Message(Message::Text(text.into()))
    }

    fn json(&mut self, snap: &Snapshot, player: PlayerId, exact: Option<(f64, f64)>) -> Message {
        let ack = snap.ack(player);
        if snap.grid.sees_all() {
            let state = shared_text(snap, SLOT_JSON_STATE, || {
                serde_json::to_string(&json::NativeState {
                    world: &snap.world,
                    only: None,
                })
                .unwrap_or_default()
            });
            return Message::Text(
                encode::snapshot(snap.tick, snap.time, ack, state.as_str()).into(),
            );
        }
        self.choose_cells(snap, exact);
        self.entities_in_view(snap, None);
        let state = serde_json::to_string(&json::NativeState {
            world: &snap.world,
            only: Some(&self.only),
        })
        .unwrap_or_default();
        Message::Text(encode::snapshot(snap.tick, snap.time, ack, &state).into())
    }

    /// Builds the binary message in `self.out`, framed in place; returns
    /// where the frame starts.
    fn bin(&mut self, snap: &Snapshot, player: PlayerId, exact: Option<(f64, f64)>) -> usize {
        let prev = snap.prev.as_ref().map(|(w, c)| (w.as_ref(), c.as_ref()));
        let pieces: Arc<Pieces> = snap.cache.get_or_init(SLOT_BIN_PIECES, || {
            Pieces::build(&snap.world, &snap.cells, prev, snap.grid.cells())
        });
        let delta =
            self.last.is_some() && self.last == snap.tick.checked_sub(1) && pieces.has_delta();
        let same = |a: (f64, f64), b: (f64, f64)| {
            a.0.to_bits() == b.0.to_bits() && a.1.to_bits() == b.1.to_bits()
        };
        let send_own = match (exact, self.own) {
            (Some(e), Some(o)) => !delta || !same(e, o),
            (e, _) => e.is_some(),
        };
        self.own = exact;
        self.choose_cells(snap, exact);
        let header = bin::Header {
            tick: snap.tick,
            ack: snap.ack(player),
            base: u64::from(delta),
            own: exact.filter(|_| send_own),
        };
        let msg = &mut self.out;
        msg.clear();
        msg.resize(ws::FRAME_HEADER_ROOM, 0);
        bin::put_header(msg, &header);
        let view = View {
            now: &self.now,
            before: delta.then_some(self.cells.as_slice()),
        };
        assemble(msg, &pieces, &view, &snap.world, &snap.cells, prev);
        std::mem::swap(&mut self.cells, &mut self.now);
        ws::frame_in_place(msg)
    }
}

/// A text every client of its kind gets, encoded (and framed) once per
/// snapshot by whichever client needs it first.
fn shared_text(snap: &Snapshot, slot: usize, make: impl FnOnce() -> String) -> Arc<Shared> {
    snap.cache.get_or_init(slot, || Shared::text(make()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interest::{CellIndex, Grid};
    use crate::protocol::bin::Replica;
    use crate::replicate::{to_units, Entity, Field, FieldKind, Schema, Value};
    use crate::snapshot::EncodeCache;
    use proptest::prelude::*;

    static SCHEMA: Schema = Schema {
        collection: "dots",
        fields: &[Field {
            name: "hp",
            kind: FieldKind::Int,
        }],
    };
    const KINDS: &[FieldKind] = &[FieldKind::Int];

    fn world(items: &[(u64, f64, f64, i64)]) -> World {
        let mut w = World::new(&SCHEMA);
        for &(id, x, y, hp) in items {
            w.push(Entity { id, x, y }, [Value::Int(hp)]);
        }
        w.finish();
        w
    }

    /// Builds snapshots the way a room does, one per world.
    struct Room {
        grid: Grid,
        tick: u64,
        last: Option<(Arc<World>, Arc<CellIndex>)>,
    }

    impl Room {
        fn publish(&mut self, w: World) -> Snapshot {
            self.tick += 1;
            let cells = Arc::new(CellIndex::build(&self.grid, &w));
            let w = Arc::new(w);
            let prev = self.last.replace((Arc::clone(&w), Arc::clone(&cells)));
            Snapshot {
                tick: self.tick,
                time: 0.0,
                grid: self.grid,
                world: w,
                cells,
                prev,
                acks: vec![],
                cache: EncodeCache::default(),
                published: std::time::Instant::now(),
            }
        }
    }

    fn bytes(m: Message) -> Vec<u8> {
        match m {
            Message::Binary(b) => b.to_vec(),
            other => panic!("expected binary, got {other:?}"),
        }
    }

    /// What a client with its entity at `own` must hold: every entity in
    /// the cells its view touches, at its quantised position.
    fn expected(grid: &Grid, w: &World, own: (f64, f64)) -> Vec<(u64, i64, i64)> {
        let mut cells = Vec::new();
        grid.view_cells(own.0, own.1, &mut cells);
        w.entities()
            .iter()
            .filter(|e| cells.contains(&grid.cell_of(e.x, e.y)))
            .map(|e| (e.id, to_units(e.x), to_units(e.y)))
            .collect()
    }

    fn held(r: &Replica) -> Vec<(u64, i64, i64)> {
        r.entities.iter().map(|(&id, e)| (id, e.x, e.y)).collect()
    }

    /// A message the socket never took is forgotten: the next one is full,
    /// and a client that applies only what it got stays right.
    #[test]
    fn after_a_forgotten_message_the_next_is_full() {
        let mut room = Room {
            grid: Grid::new(500.0, 500.0),
            tick: 0,
            last: None,
        };
        let mut enc = Encoder::new(Protocol::NativeBin);
        let mut replica = Replica::default();
        let first = room.publish(world(&[(1, 10.0, 10.0, 1), (2, 50.0, 50.0, 1)]));
        replica
            .apply(
                &bytes(enc.snapshot(&first, 1).unwrap().into_message()),
                KINDS,
            )
            .unwrap();
        let lost = room.publish(world(&[(1, 20.0, 10.0, 1), (2, 50.0, 60.0, 2)]));
        let _ = enc.snapshot(&lost, 1);
        enc.forget();
        let next = room.publish(world(&[(1, 30.0, 10.0, 1), (2, 50.0, 70.0, 3)]));
        let msg = bytes(enc.snapshot(&next, 1).unwrap().into_message());
        let header = replica.apply(&msg, KINDS).unwrap();
        assert_eq!(header.base, 0, "a full snapshot");
        assert_eq!(
            held(&replica),
            vec![
                (1, to_units(30.0), to_units(10.0)),
                (2, to_units(50.0), to_units(70.0))
            ]
        );
    }

    #[test]
    fn one_cell_is_the_plain_shared_delta() {
        let mut room = Room {
            grid: Grid::new(500.0, 500.0),
            tick: 0,
            last: None,
        };
        let a = world(&[(1, 10.0, 10.0, 1), (2, 50.0, 50.0, 1), (3, 90.0, 90.0, 1)]);
        let b = world(&[(1, 20.0, 10.0, 1), (3, 90.0, 97.5, 2), (4, 1.0, 1.0, 0)]);
        let mut expect = Vec::new();
        bin::encode_delta(&a, &b, &mut expect);
        let mut enc = Encoder::new(Protocol::NativeBin);
        let s1 = room.publish(a);
        enc.snapshot(&s1, 99);
        let s2 = room.publish(b);
        let msg = bytes(enc.snapshot(&s2, 99).unwrap().into_message());
        // Header: type, tick 2, ack 0, base 1; then exactly the delta.
        assert_eq!(&msg[..4], &[bin::MSG_SNAPSHOT, 2, 0, 1]);
        assert_eq!(&msg[4..], &expect[..]);
    }

    #[test]
    fn views_enter_and_leave_at_cell_borders() {
        // 2000 px world, 500 px views: 250 px cells.
        let grid = Grid::new(2000.0, 500.0);
        let mut room = Room {
            grid,
            tick: 0,
            last: None,
        };
        let mut enc = Encoder::new(Protocol::NativeBin);
        let mut r = Replica::default();
        // Entity 1 is the client; 2 sits just across the border the client
        // walks towards, 3 walks along with it, 4 is far away.
        let mut own = (240.0, 100.0);
        for step in 0..60 {
            let x = own.0;
            let w = world(&[
                (1, x, 100.0, 0),
                (2, 760.0, 100.0, 0),
                (3, x + 300.0, 120.0, step),
                (4, 1900.0, 1900.0, 0),
            ]);
            let exp = expected(&grid, &w, own);
            let snap = room.publish(w);
            let msg = bytes(enc.snapshot(&snap, 1).unwrap().into_message());
            r.apply(&msg, KINDS).unwrap();
            assert_eq!(held(&r), exp, "step {step} at x={x}");
            assert_eq!(r.own, Some(own));
            own.0 += 10.0;
        }
        // Walked from cell 0 to cell 3: entity 2 (cell 3) came into view.
        assert!(r.entities.contains_key(&2));
        assert!(!r.entities.contains_key(&4));
    }

    fn arb_steps() -> impl Strategy<Value = Vec<(Vec<(f64, f64)>, bool)>> {
        // 12 entities (id 1 is the client) wandering a 1000 px world, and
        // which ticks the client misses.
        proptest::collection::vec(
            (
                proptest::collection::vec((0.0f64..1000.0, 0.0f64..1000.0), 12),
                any::<bool>(),
            ),
            1..25,
        )
    }

    proptest! {
        /// However entities jump around, appear and vanish, and whichever
        /// ticks the client misses, the client always holds exactly the
        /// entities in its view cells, at their quantised positions.
        #[test]
        fn a_client_always_holds_exactly_its_view(
            steps in arb_steps(),
            present in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 12), 25),
            walk in 1.0f64..40.0,
        ) {
            let grid = Grid::new(1000.0, 300.0);
            let mut room = Room { grid, tick: 0, last: None };
            let mut enc = Encoder::new(Protocol::NativeBin);
            let mut r = Replica::default();
            let mut me = (500.0, 500.0);
            for (t, (positions, skip)) in steps.iter().enumerate() {
                me.0 = (me.0 + walk) % 1000.0;
                let items: Vec<_> = positions
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i == 0 || present[t][i])
                    .map(|(i, &(x, y))| {
                        let (x, y) = if i == 0 { me } else { (x, y) };
                        (i as u64 + 1, x, y, t as i64)
                    })
                    .collect();
                let w = world(&items);
                let exp = expected(&grid, &w, me);
                let snap = room.publish(w);
                if *skip && t > 0 {
                    continue; // the client was too slow for this one
                }
                let msg = bytes(enc.snapshot(&snap, 1).unwrap().into_message());
                r.apply(&msg, KINDS).unwrap();
                prop_assert_eq!(held(&r), exp);
                prop_assert!(r.entities.values().all(|e| e.fields == [Value::Int(t as i64)]));
            }
        }
    }

    #[test]
    fn seed_clients_see_a_window_around_their_dot_in_a_large_world() {
        let grid = Grid::new(3000.0, 500.0);
        let mut room = Room {
            grid,
            tick: 0,
            last: None,
        };
        let w = world(&[
            (1, 1000.0, 2990.0, 0),
            (2, 1100.0, 2800.0, 0),
            (3, 100.0, 100.0, 0),
        ]);
        let snap = room.publish(w);
        let mut enc = Encoder::new(Protocol::Seed);
        let Some(Message::Text(t)) = enc.snapshot(&snap, 1).map(Outgoing::into_message) else {
            panic!("seed sends text");
        };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        // Window x: 750..1250, y clamped to the bottom edge: 2500..3000.
        assert_eq!(
            v["players"],
            serde_json::json!([
                {"id": "1", "x": 250, "y": 490, "hp": 0},
                {"id": "2", "x": 350, "y": 300, "hp": 0},
            ])
        );
    }

    #[test]
    fn json_clients_get_their_view_in_a_large_world() {
        let grid = Grid::new(3000.0, 500.0);
        let mut room = Room {
            grid,
            tick: 0,
            last: None,
        };
        let w = world(&[
            (1, 1000.0, 1000.0, 0),
            (2, 1200.0, 1000.0, 0),
            (3, 100.0, 100.0, 0),
        ]);
        let snap = room.publish(w);
        let mut enc = Encoder::new(Protocol::NativeJson);
        let Some(Message::Text(t)) = enc.snapshot(&snap, 1).map(Outgoing::into_message) else {
            panic!("json sends text");
        };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        let ids: Vec<_> = v["state"]["dots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [1, 2]);
    }
}
