//! Shared fixtures for `playfield.v1.bin`: the Rust encoder writes a
//! deterministic sequence of snapshots, the reference decoder
//! ([`bin::Replica`]) must reach every expected state, and the browser's
//! `client/js/bin.js` is checked against the very same file by
//! `client/test/bin.test.js`. Two decoders in two languages, one truth.
//!
//! The file is committed: a change to the wire format shows up as a diff of
//! `client/test/fixtures/bin-snapshots.json`, and the JavaScript tests run
//! without Rust. This test fails when the committed file is stale; rewrite
//! it with `PLAYFIELD_WRITE_FIXTURES=1 cargo test --test bin_fixtures`.
//!
//! Besides the snapshot steps the file holds malformed messages with the
//! error the reference decoder gives, deterministic mutations of the step
//! messages with the reference outcome (so the two decoders are compared on
//! inputs nobody wrote by hand), and the bytes of binary client messages.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use playfield::dots::DotInput;
use playfield::protocol::bin::{
    self, encode_delta, encode_full, op, put_header, put_varint, put_zigzag, read_header,
    DecodeError, Header, Reader, Replica,
};
use playfield::replicate::{to_units, Entity, EntityId, Field, FieldKind, Schema, Value, World};
use serde_json::{json, Value as Json};

const FIXTURE: &str = "client/test/fixtures/bin-snapshots.json";
const REGENERATE: &str = "PLAYFIELD_WRITE_FIXTURES=1 cargo test --test bin_fixtures";

/// Every field kind, so every value encoding is exercised.
static SCHEMA: Schema = Schema {
    collection: "things",
    fields: &[
        Field {
            name: "color",
            kind: FieldKind::Str,
        },
        Field {
            name: "hp",
            kind: FieldKind::Int,
        },
        Field {
            name: "speed",
            kind: FieldKind::Float,
        },
        Field {
            name: "alive",
            kind: FieldKind::Bool,
        },
    ],
};

fn kinds() -> Vec<FieldKind> {
    SCHEMA.fields.iter().map(|f| f.kind).collect()
}

/// One entity as the fixtures write it: id, x, y, color, hp, speed, alive.
#[derive(Debug, Clone, Copy)]
struct Thing(EntityId, f64, f64, &'static str, i64, f32, bool);

fn world(things: &[Thing]) -> World {
    let mut w = World::new(&SCHEMA);
    for &Thing(id, x, y, color, hp, speed, alive) in things {
        w.push(
            Entity { id, x, y },
            [
                Value::Str(Arc::from(color)),
                Value::Int(hp),
                Value::Float(speed),
                Value::Bool(alive),
            ],
        );
    }
    w.finish();
    assert!(w.error().is_none(), "{:?}", w.error());
    w
}

/// `things` with the entity `id` replaced by (or, if absent, added as) `t`.
fn with(things: &[Thing], t: Thing) -> Vec<Thing> {
    let mut out: Vec<Thing> = things.iter().copied().filter(|o| o.0 != t.0).collect();
    out.push(t);
    out.sort_by_key(|o| o.0);
    out
}

fn without(things: &[Thing], id: EntityId) -> Vec<Thing> {
    things.iter().copied().filter(|o| o.0 != id).collect()
}

fn message(tick: u64, ack: u32, base: u64, own: Option<(f64, f64)>, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    put_header(
        &mut msg,
        &Header {
            tick,
            ack,
            base,
            own,
        },
    );
    msg.extend_from_slice(body);
    msg
}

fn full_body(w: &World) -> Vec<u8> {
    let mut body = Vec::new();
    encode_full(w, &mut body);
    body
}

fn delta_body(prev: &World, cur: &World) -> Vec<u8> {
    let mut body = Vec::new();
    encode_delta(prev, cur, &mut body);
    body
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Integers JavaScript numbers hold exactly are JSON numbers; others are
/// strings (the JS decoder gives a BigInt for those).
fn int_json(v: i64) -> Json {
    const SAFE: i64 = (1 << 53) - 1;
    if (-SAFE..=SAFE).contains(&v) {
        json!(v)
    } else {
        json!(v.to_string())
    }
}

/// Finite floats as JSON numbers (exact: f32 widens to f64 without loss),
/// others as the strings JavaScript's `String(number)` gives.
fn float_json(v: f64) -> Json {
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        json!("NaN")
    } else if v > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    }
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => json!(b),
        Value::Int(i) => int_json(*i),
        Value::Float(f) => float_json(f64::from(*f)),
        Value::Str(s) => json!(s.as_ref()),
    }
}

fn own_json(own: Option<(f64, f64)>) -> Json {
    own.map_or(Json::Null, |(x, y)| json!([float_json(x), float_json(y)]))
}

/// A replica's entities, in id order, as the fixture file states them.
fn entities_json(r: &Replica) -> Json {
    Json::Array(
        r.entities
            .iter()
            .map(|(id, e)| {
                let fields: serde_json::Map<String, Json> = SCHEMA
                    .fields
                    .iter()
                    .zip(&e.fields)
                    .map(|(f, v)| (f.name.to_owned(), value_json(v)))
                    .collect();
                json!({"id": int_json(*id as i64), "x": int_json(e.x), "y": int_json(e.y), "fields": fields})
            })
            .collect(),
    )
}

/// Whether the replica holds exactly `world` (as `Replica::matches`, but
/// floats compare by bits: NaN is a value like any other on the wire).
fn same_state(r: &Replica, world: &World) -> bool {
    let same = |a: &Value, b: &Value| match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (a, b) => a == b,
    };
    r.entities.len() == world.len()
        && world.entities().iter().enumerate().all(|(i, e)| {
            r.entities.get(&e.id).is_some_and(|h| {
                h.x == to_units(e.x)
                    && h.y == to_units(e.y)
                    && h.fields.len() == world.fields(i).len()
                    && h.fields
                        .iter()
                        .zip(world.fields(i))
                        .all(|(a, b)| same(a, b))
            })
        })
}

/// `DecodeError`'s variant name: the `kind` the JS decoder reports.
fn variant(e: &DecodeError) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// What a message contains, record by record, for the coverage checks.
#[derive(Debug, Default)]
struct Scan {
    msg_type: u8,
    header: Option<Header>,
    records: Vec<Record>,
}

/// One record of a scanned message.
#[derive(Debug)]
struct Record {
    op: u8,
    id: EntityId,
    /// Whether the gap needed the varint escape.
    escaped: bool,
    /// An UPDATE's change mask.
    mask: u64,
    /// A move's `i8` deltas.
    moves: Vec<i64>,
}

/// Walks a well-formed message without applying it, independently of
/// `Replica::apply`, to check what the steps cover.
fn scan(msg: &[u8]) -> Scan {
    let kinds = kinds();
    let mut r = Reader::new(msg);
    let header = read_header(&mut r).unwrap();
    let mut out = Scan {
        msg_type: msg[0],
        header: Some(header),
        records: Vec::new(),
    };
    let skip_value = |r: &mut Reader<'_>, k: FieldKind| match k {
        FieldKind::Bool => {
            r.u8().unwrap();
        }
        FieldKind::Int => {
            r.zigzag().unwrap();
        }
        FieldKind::Float => {
            for _ in 0..4 {
                r.u8().unwrap();
            }
        }
        FieldKind::Str => {
            for _ in 0..r.varint().unwrap() {
                r.u8().unwrap();
            }
        }
    };
    let mut next: EntityId = 0;
    while !r.is_empty() {
        let head = r.u8().unwrap();
        let (opc, mut gap) = (head >> 5, u64::from(head & 0x1f));
        if opc == op::RESET {
            out.records.push(Record {
                op: opc,
                id: 0,
                escaped: false,
                mask: 0,
                moves: vec![],
            });
            next = 0;
            continue;
        }
        let escaped = gap == 31;
        if escaped {
            gap += r.varint().unwrap();
        }
        let id = next + gap;
        next = id + 1;
        let mut mask = 0;
        let mut moves = vec![];
        match opc {
            op::MOVE | op::MOVE_X | op::MOVE_Y => {
                let n = if opc == op::MOVE { 2 } else { 1 };
                for _ in 0..n {
                    moves.push(i64::from(r.u8().unwrap() as i8));
                }
            }
            op::UPDATE => {
                mask = r.varint().unwrap();
                if mask & 1 != 0 {
                    r.zigzag().unwrap();
                    r.zigzag().unwrap();
                }
                for (k, &kind) in kinds.iter().enumerate() {
                    if mask & (1 << (k + 1)) != 0 {
                        skip_value(&mut r, kind);
                    }
                }
            }
            op::SPAWN => {
                r.zigzag().unwrap();
                r.zigzag().unwrap();
                for &kind in &kinds {
                    skip_value(&mut r, kind);
                }
            }
            op::DESPAWN => {}
            other => panic!("unexpected op {other}"),
        }
        out.records.push(Record {
            op: opc,
            id,
            escaped,
            mask,
            moves,
        });
    }
    out
}

/// Builds the steps, applying each to the reference decoder as it goes.
struct Steps {
    replica: Replica,
    /// The own position the client must hold after each step, tracked by
    /// the rule (full snapshot: the header's; delta: the header's, else kept)
    /// rather than read back from the decoder under test.
    own: Option<(f64, f64)>,
    /// Replica state before each step, for the mutation cases.
    before: Vec<Replica>,
    messages: Vec<Vec<u8>>,
    json: Vec<Json>,
    scans: Vec<Scan>,
    /// Ids a SPAWN record named while the client already held them.
    replaced: BTreeSet<EntityId>,
}

impl Steps {
    fn new() -> Self {
        Steps {
            replica: Replica::default(),
            own: None,
            before: Vec::new(),
            messages: Vec::new(),
            json: Vec::new(),
            scans: Vec::new(),
            replaced: BTreeSet::new(),
        }
    }

    fn push(&mut self, name: &str, msg: Vec<u8>, expect: &[Thing]) {
        let expected = world(expect);
        let s = scan(&msg);
        for &Record { op: opc, id, .. } in &s.records {
            if opc == op::SPAWN
                && s.header.unwrap().base != 0
                && self.replica.entities.contains_key(&id)
            {
                self.replaced.insert(id);
            }
        }
        self.before.push(self.replica.clone());
        let h = self
            .replica
            .apply(&msg, &kinds())
            .unwrap_or_else(|e| panic!("step {name}: {e}"));
        if h.base == 0 {
            self.own = None;
        }
        if h.own.is_some() {
            self.own = h.own;
        }
        assert!(
            same_state(&self.replica, &expected),
            "step {name}: the reference decoder holds {:?}, expected {expect:?}",
            self.replica
        );
        let bits = |o: Option<(f64, f64)>| o.map(|(x, y)| (x.to_bits(), y.to_bits()));
        assert_eq!(bits(self.replica.own), bits(self.own), "step {name}: own");
        assert_eq!(self.replica.tick, Some(h.tick), "step {name}: tick");
        self.json.push(json!({
            "name": name,
            "hex": hex(&msg),
            "tick": h.tick,
            "ack": h.ack,
            "base": h.base,
            "header_own": own_json(h.own),
            "own": own_json(self.own),
            "entities": entities_json(&self.replica),
        }));
        self.messages.push(msg);
        self.scans.push(s);
    }
}

/// The snapshot sequence. Entity 1 is "us": its exact position rides in the
/// header whenever it changed, as the server's encoder does.
fn build_steps() -> Steps {
    let mut st = Steps::new();

    // A full snapshot. 100.1 is not on the 1/8 px grid: the entity says 801
    // units (100.125 px), the header says 100.1 exactly. A negative
    // coordinate and a non-ASCII string with a byte-order mark, which a
    // decoder must keep.
    let w1 = vec![
        Thing(1, 100.1, 80.0, "#ff0000", 10, 1.5, true),
        Thing(2, 250.0, 250.0, "", 0, 0.0, false),
        Thing(5, -3.0, 12.625, "\u{feff}héllo ✓", -7, -0.1, true),
    ];
    st.push(
        "full snapshot with own exact position",
        message(300, 0, 0, Some((100.1, 80.0)), &full_body(&world(&w1))),
        &w1,
    );

    // Moves: 10 px along x, along y, and 10 px diagonally (7.07 px per axis).
    let d = std::f64::consts::FRAC_1_SQRT_2 * 10.0;
    let w2 = vec![
        Thing(1, 110.1, 80.0, "#ff0000", 10, 1.5, true),
        Thing(2, 250.0, 260.0, "", 0, 0.0, false),
        Thing(5, -3.0 + d, 12.625 + d, "\u{feff}héllo ✓", -7, -0.1, true),
    ];
    st.push(
        "moves along x, y and diagonal",
        message(
            301,
            1,
            1,
            Some((110.1, 80.0)),
            &delta_body(&world(&w1), &world(&w2)),
        ),
        &w2,
    );

    // -16 px is -128 units, the smallest i8: still a MOVE_X. +16 px is 128
    // units, one too many: an UPDATE with the absolute position, like the
    // teleport of entity 2.
    let w3 = vec![
        Thing(1, 94.1, 80.0, "#ff0000", 10, 1.5, true),
        Thing(2, 400.0, 30.0, "", 0, 0.0, false),
        Thing(5, -3.0 + d, 28.625 + d, "\u{feff}héllo ✓", -7, -0.1, true),
    ];
    st.push(
        "i8 limits and a big move (absolute position)",
        message(
            302,
            2,
            1,
            Some((94.1, 80.0)),
            &delta_body(&world(&w2), &world(&w3)),
        ),
        &w3,
    );

    // Field changes: one field; three fields (an i64 beyond 2^53, NaN);
    // position and a field together. Entity 1 stands still: no own position
    // in the header, the client keeps the last one.
    let w4 = vec![
        Thing(1, 94.1, 80.0, "#00ff00", 10, 1.5, true),
        Thing(2, 400.0, 30.0, "", i64::MAX, f32::NAN, true),
        Thing(5, -2.875 + d, 28.625 + d, "", -7, -0.1, true),
    ];
    st.push(
        "field changes",
        message(303, 3, 1, None, &delta_body(&world(&w3), &world(&w4))),
        &w4,
    );

    // A spawn between existing ids, a despawn; the largest safe integer and
    // infinity as values.
    let w5 = with(
        &without(&w4, 2),
        Thing(
            3,
            60.0,
            60.0,
            "#0000ff",
            (1 << 53) - 1,
            f32::INFINITY,
            false,
        ),
    );
    st.push(
        "spawn and despawn",
        message(304, 4, 1, None, &delta_body(&world(&w4), &world(&w5))),
        &w5,
    );

    // Ids far apart: after id 5 the next free id is 6, so 36 is gap 30 (the
    // largest inline gap), 68 gap 31 (escape, varint 0), 300 gap 231 and
    // 5e9 a five-byte varint.
    let mut w6 = with(&w5, Thing(1, 94.1, 90.0, "#00ff00", 10, 1.5, true));
    for t in [
        Thing(36, 36.0, 36.0, "a", 36, 0.25, true),
        Thing(68, 68.0, 68.0, "b", -68, -0.0, false),
        Thing(300, 3000.0, -3000.0, "c", 300, f32::MAX, true),
        Thing(
            5_000_000_000,
            0.0,
            0.0,
            "d",
            i64::MIN,
            f32::NEG_INFINITY,
            true,
        ),
    ] {
        w6 = with(&w6, t);
    }
    st.push(
        "ids far apart (gap escape)",
        message(
            305,
            5,
            1,
            Some((94.1, 90.0)),
            &delta_body(&world(&w5), &world(&w6)),
        ),
        &w6,
    );

    // Two runs, as a server that encodes per spatial cell sends them: cell
    // A holds ids {1, 36, 300}, cell B {3, 5, 68, 5e9}. Cell B's ids are
    // lower than cell A's last one; only the RESET between the runs makes
    // them decodable.
    let cell_a = |w: &[Thing]| -> Vec<Thing> {
        w.iter()
            .copied()
            .filter(|t| [1, 36, 300].contains(&t.0))
            .collect()
    };
    let cell_b = |w: &[Thing]| -> Vec<Thing> {
        w.iter()
            .copied()
            .filter(|t| ![1, 36, 300].contains(&t.0))
            .collect()
    };
    let mut w7 = with(&w6, Thing(1, 104.1, 90.0, "#00ff00", 10, 1.5, true));
    w7 = with(&w7, Thing(300, 3000.0, -3000.0, "c", 301, f32::MAX, true));
    w7 = with(
        &w7,
        Thing(3, 60.0, 70.0, "#0000ff", 1, f32::INFINITY, false),
    );
    w7 = without(&w7, 68);
    let mut body = delta_body(&world(&cell_a(&w6)), &world(&cell_a(&w7)));
    body.push(op::RESET << 5);
    body.extend(delta_body(&world(&cell_b(&w6)), &world(&cell_b(&w7))));
    st.push(
        "two runs separated by RESET",
        message(306, 6, 1, Some((104.1, 90.0)), &body),
        &w7,
    );

    // A SPAWN for an entity the client holds replaces it: every value is new.
    let five = Thing(5, 7.5, -7.5, "new", 55, 5.5, false);
    let w8 = with(&w7, five);
    st.push(
        "SPAWN replaces an existing entity",
        message(307, 7, 1, None, &full_body(&world(&[five]))),
        &w8,
    );

    // Nothing changed: a header and no records.
    st.push(
        "empty delta",
        message(308, 7, 1, None, &delta_body(&world(&w8), &world(&w8))),
        &w8,
    );

    // The client missed tick 309: tick 310 comes as a full snapshot, which
    // replaces everything. Our entity is gone (say, we died), so there is no
    // own position and the client must forget the last one.
    let w10 = with(
        &without(&without(&w8, 1), 36),
        Thing(7, 77.0, 77.0, "#777777", 7, 7.0, true),
    );
    st.push(
        "full snapshot after a skipped tick",
        message(310, 9, 0, None, &full_body(&world(&w10))),
        &w10,
    );

    // We are back: a spawn, and our exact position again.
    let w11 = with(&w10, Thing(1, 250.5, 249.75, "#ff0000", 10, 1.5, true));
    st.push(
        "own entity spawns again",
        message(
            311,
            70_000,
            1,
            Some((250.5, 249.75)),
            &delta_body(&world(&w10), &world(&w11)),
        ),
        &w11,
    );

    // The format allows a delta against an older tick (base 2) as long as
    // it is the one the client holds: 313 against 311.
    let w13 = with(&w11, Thing(7, 87.0, 77.0, "#777777", 7, 7.0, true));
    st.push(
        "delta against two ticks back",
        message(
            313,
            70_001,
            2,
            None,
            &delta_body(&world(&w11), &world(&w13)),
        ),
        &w13,
    );

    st
}

/// Checks the steps cover what they claim to, so a change of the encoder
/// cannot quietly shrink the fixtures.
fn check_coverage(st: &Steps) {
    let all: Vec<_> = st.scans.iter().flat_map(|s| &s.records).collect();
    let has = |pred: &dyn Fn(&Record) -> bool| all.iter().any(|r| pred(r));
    assert!(has(&|r| r.op == op::MOVE), "a diagonal MOVE");
    assert!(
        has(&|r| r.op == op::MOVE_X && r.moves == [-128]),
        "MOVE_X by -128"
    );
    assert!(has(&|r| r.op == op::MOVE_Y), "MOVE_Y");
    assert!(
        has(&|r| r.op == op::UPDATE && r.mask == 1),
        "UPDATE of the position alone"
    );
    assert!(
        has(&|r| r.op == op::UPDATE && r.mask & 1 == 0),
        "UPDATE of fields alone"
    );
    assert!(
        has(&|r| r.op == op::UPDATE && r.mask & 1 == 1 && r.mask > 1),
        "UPDATE of position and fields"
    );
    assert!(
        has(&|r| r.op == op::UPDATE && r.mask.count_ones() >= 3),
        "UPDATE of several fields"
    );
    assert!(has(&|r| r.op == op::SPAWN), "SPAWN");
    assert!(has(&|r| r.op == op::DESPAWN), "DESPAWN");
    assert!(has(&|r| r.op == op::RESET), "RESET");
    assert!(
        has(&|r| r.escaped && r.id == 68),
        "gap of exactly 31 (escape + 0)"
    );
    assert!(
        has(&|r| r.escaped && r.id > 1 << 32),
        "a gap needing a long varint"
    );
    assert!(!st.replaced.is_empty(), "a SPAWN replacing a held entity");
    let headers: Vec<Header> = st.scans.iter().map(|s| s.header.unwrap()).collect();
    assert!(st.scans[0].msg_type == bin::MSG_SNAPSHOT_OWN && headers[0].base == 0);
    assert!(st
        .scans
        .iter()
        .any(|s| s.msg_type == bin::MSG_SNAPSHOT && s.header.unwrap().base > 0));
    assert!(
        headers
            .windows(2)
            .any(|w| w[1].base == 0 && w[1].tick > w[0].tick + 1),
        "a full snapshot after a skipped tick"
    );
    assert!(
        headers.iter().any(|h| h.base > 1),
        "a delta against an older tick"
    );
    assert!(st
        .scans
        .iter()
        .any(|s| s.header.unwrap().base > 0 && s.records.is_empty()));
}

/// Malformed messages, each after `setup` messages that decode, with the
/// reference decoder's verdict.
fn error_cases() -> Vec<Json> {
    let k = kinds();
    let spawn1 = {
        let mut b = message(5, 0, 0, None, &[]);
        b.push(op::SPAWN << 5 | 1);
        put_zigzag(&mut b, 8);
        put_zigzag(&mut b, -8);
        b.extend_from_slice(&[1, b'a', 0]);
        b.extend_from_slice(&0f32.to_le_bytes());
        b.push(1);
        b
    };
    let head = |tick: u64, base: u64| message(tick, 0, base, None, &[]);
    let cat = |a: Vec<u8>, b: &[u8]| [a.as_slice(), b].concat();
    let spawn_str = |s: &[u8]| {
        let mut b = head(5, 0);
        b.push(op::SPAWN << 5);
        b.extend_from_slice(&[0, 0]);
        put_varint(&mut b, s.len() as u64);
        b.extend_from_slice(s);
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        b
    };
    let mut huge_gap = head(6, 1);
    huge_gap.push(op::DESPAWN << 5 | 31);
    put_varint(&mut huge_gap, u64::MAX);
    let mut overflow_after = head(6, 1);
    overflow_after.push(op::MOVE_X << 5 | 1); // id 1, next 2
    overflow_after.push(0);
    overflow_after.push(op::DESPAWN << 5 | 31);
    put_varint(&mut overflow_after, u64::MAX - 31 - 1);
    // (name, messages applied first, the malformed message)
    type Case = (&'static str, Vec<Vec<u8>>, Vec<u8>);
    let cases: Vec<Case> = vec![
        ("empty message", vec![], vec![]),
        ("unknown message type", vec![], vec![0x09]),
        ("client message type 0x00", vec![], vec![0x00, 1, 0, 0]),
        ("header cut in a varint", vec![], vec![0x01, 0x80]),
        ("header without base", vec![], vec![0x01, 5, 0]),
        (
            "own position cut short",
            vec![],
            vec![0x02, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "varint of 11 bytes",
            vec![],
            vec![
                0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
            ],
        ),
        (
            "10th varint byte above 1",
            vec![],
            vec![
                0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ],
        ),
        ("delta without a base", vec![], head(5, 1)),
        ("delta against the wrong tick", vec![head(5, 0)], head(7, 1)),
        ("base beyond the tick", vec![head(5, 0)], head(6, 7)),
        (
            "despawn of an unknown entity",
            vec![head(5, 0)],
            cat(head(6, 1), &[op::DESPAWN << 5]),
        ),
        (
            "move of an unknown entity",
            vec![spawn1.clone()],
            cat(head(6, 1), &[op::MOVE << 5 | 2, 1, 1]),
        ),
        (
            "move cut short",
            vec![spawn1.clone()],
            cat(head(6, 1), &[op::MOVE << 5 | 1, 1]),
        ),
        (
            "update of an unknown entity",
            vec![spawn1.clone()],
            cat(head(6, 1), &[op::UPDATE << 5, 0b10, 0]),
        ),
        ("unknown op 7", vec![head(5, 0)], cat(head(6, 1), &[7 << 5])),
        (
            "unknown op 7 with a gap escape and no varint",
            vec![head(5, 0)],
            cat(head(6, 1), &[7 << 5 | 31]),
        ),
        (
            "mask naming a field the schema lacks",
            vec![spawn1.clone()],
            cat(head(6, 1), &[op::UPDATE << 5 | 1, 1 << 5]),
        ),
        (
            "bad mask is checked before the entity",
            vec![head(5, 0)],
            cat(head(6, 1), &[op::UPDATE << 5 | 9, 0xff, 0x01]),
        ),
        ("gap overflows 64 bits", vec![spawn1.clone()], huge_gap),
        ("id overflows 64 bits", vec![spawn1.clone()], overflow_after),
        (
            "spawn cut short",
            vec![],
            spawn1[..spawn1.len() - 1].to_vec(),
        ),
        (
            "string longer than the message",
            vec![],
            cat(head(5, 0), &[op::SPAWN << 5, 0, 0, 0x7f, b'a']),
        ),
        (
            "string length beyond 2^53",
            vec![],
            cat(
                head(5, 0),
                &[
                    op::SPAWN << 5,
                    0,
                    0,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0x01,
                ],
            ),
        ),
        ("string not UTF-8", vec![], spawn_str(&[0xff])),
        (
            "string with an overlong encoding",
            vec![],
            spawn_str(&[0xc0, 0x80]),
        ),
        (
            "string with a UTF-16 surrogate",
            vec![],
            spawn_str(&[0xed, 0xa0, 0x80]),
        ),
        (
            "string cut inside a character",
            vec![],
            spawn_str(&[b'a', 0xe2, 0x9c]),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, setup, msg)| {
            let mut r = Replica::default();
            for s in &setup {
                r.apply(s, &k)
                    .unwrap_or_else(|e| panic!("{name}: setup failed: {e}"));
            }
            let err = r
                .apply(&msg, &k)
                .expect_err(&format!("{name}: must not decode"));
            json!({
                "name": name,
                "setup": setup.iter().map(|s| hex(s)).collect::<Vec<_>>(),
                "hex": hex(&msg),
                "error": variant(&err),
                "message": err.to_string(),
            })
        })
        .collect()
}

/// A small deterministic generator (xorshift64*): the fixture file must not
/// change when a random-number crate does.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Step messages with a random change (a flipped bit, a random byte, a byte
/// inserted or removed, the end cut off, two messages glued), applied to the
/// state the step started from, with the reference outcome.
fn mutations(st: &Steps, count: usize) -> Vec<Json> {
    let k = kinds();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    let mut oks = 0;
    while out.len() < count {
        let step = rng.below(st.messages.len());
        let mut m = st.messages[step].clone();
        match rng.below(6) {
            0 => {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(m.len() + 1);
                m.insert(i, rng.next() as u8);
            }
            3 => {
                let i = rng.below(m.len());
                m.remove(i);
            }
            4 => m.truncate(rng.below(m.len())),
            _ => {
                let other = &st.messages[rng.below(st.messages.len())];
                let skip = rng.below(other.len());
                m.extend_from_slice(&other[skip..]);
            }
        }
        if m == st.messages[step] {
            continue;
        }
        let mut r = st.before[step].clone();
        let case = match r.apply(&m, &k) {
            Ok(h) => {
                oks += 1;
                json!({
                    "step": step,
                    "hex": hex(&m),
                    "error": Json::Null,
                    "tick": h.tick,
                    "ack": h.ack,
                    "own": own_json(r.own),
                    "entities": entities_json(&r),
                })
            }
            Err(e) => json!({
                "step": step,
                "hex": hex(&m),
                "error": variant(&e),
                "message": e.to_string(),
            }),
        };
        out.push(case);
    }
    assert!(
        oks > count / 10 && oks < count * 9 / 10,
        "mutations should mix decodable and broken messages ({oks} of {count} decode)"
    );
    out
}

fn client_messages() -> Json {
    let inputs: Vec<(u32, f64, f64)> = vec![
        (7, 1.0, -0.5),
        (0, 0.0, 0.0),
        (1, -1.0, 1.0),
        (300, 0.6, -0.8),
        (u32::MAX, std::f64::consts::FRAC_1_SQRT_2, -0.0),
    ];
    let pings: Vec<u64> = vec![0, 1, 127, 128, 300, 16_384, (1 << 53) - 1];
    json!({
        "inputs": inputs.iter().map(|&(seq, x, y)| json!({
            "seq": seq, "x": float_json(x), "y": float_json(y),
            "hex": hex(&bin::encode_input(seq, &DotInput::steer(x, y))),
        })).collect::<Vec<_>>(),
        "pings": pings.iter().map(|&id| json!({
            "id": id, "hex": hex(&bin::encode_ping(id)),
        })).collect::<Vec<_>>(),
    })
}

fn generate() -> String {
    let st = build_steps();
    check_coverage(&st);
    let doc = json!({
        "about": format!(
            "playfield.v1.bin fixtures: snapshot steps (apply in order; state after each), malformed messages with the reference decoder's error, mutated step messages with its outcome, binary client messages. Generated by tests/bin_fixtures.rs from the Rust encoder and checked against bin::Replica; do not edit, regenerate with `{REGENERATE}`. Positions are in 1/8 px units; integers beyond 2^53 and non-finite floats are strings."
        ),
        "schema": SCHEMA,
        "steps": st.json,
        "errors": error_cases(),
        "mutations": mutations(&st, 160),
        "client": client_messages(),
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap();
    text.push('\n');
    text
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)
}

/// `v` as it reads back from JSON text. serde_json's default float parser is
/// not always correctly rounded in the last bit (JavaScript's is), so values
/// computed here are compared with values read from the file only after
/// both went through the same text round trip.
fn canon(v: Json) -> Json {
    serde_json::from_str(&v.to_string()).unwrap()
}

fn writing() -> bool {
    std::env::var_os("PLAYFIELD_WRITE_FIXTURES").is_some_and(|v| v == "1")
}

#[test]
fn fixtures_are_current() {
    let text = generate();
    let path = fixture_path();
    if writing() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {FIXTURE} ({e}); generate it with `{REGENERATE}` and commit it")
    });
    if committed != text {
        let line = committed
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the end".to_owned(), |i| format!("line {}", i + 1));
        panic!(
            "{FIXTURE} is stale: it differs from what the encoder produces now (first at {line}). \
             If the wire format changed on purpose, regenerate it with `{REGENERATE}`, \
             check that `node --test client/test/` still passes, and commit both."
        );
    }
}

/// The committed file, read back, drives the reference decoder to every
/// state it states: the file is self-consistent, not only equal to what
/// the generator would write.
#[test]
fn reference_decoder_reaches_every_fixture_state() {
    // While regenerating, the file may be half written by the other test.
    let text = if writing() {
        generate()
    } else {
        std::fs::read_to_string(fixture_path()).unwrap_or_else(|e| {
            panic!("cannot read {FIXTURE} ({e}); generate it with `{REGENERATE}`")
        })
    };
    let doc: Json = serde_json::from_str(&text).unwrap();
    let k = kinds();
    let mut r = Replica::default();
    let mut states = Vec::new();
    for step in doc["steps"].as_array().unwrap() {
        states.push(r.clone());
        let name = step["name"].as_str().unwrap();
        let h = r
            .apply(&unhex(step["hex"].as_str().unwrap()), &k)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(json!(h.tick), step["tick"], "{name}");
        assert_eq!(json!(h.ack), step["ack"], "{name}");
        assert_eq!(json!(h.base), step["base"], "{name}");
        assert_eq!(canon(own_json(h.own)), step["header_own"], "{name}");
        assert_eq!(canon(own_json(r.own)), step["own"], "{name}");
        assert_eq!(canon(entities_json(&r)), step["entities"], "{name}");
    }
    for case in doc["errors"].as_array().unwrap() {
        let mut r = Replica::default();
        for s in case["setup"].as_array().unwrap() {
            let _ = r.apply(&unhex(s.as_str().unwrap()), &k);
        }
        let e = r
            .apply(&unhex(case["hex"].as_str().unwrap()), &k)
            .unwrap_err();
        assert_eq!(json!(variant(&e)), case["error"], "{}", case["name"]);
        assert_eq!(json!(e.to_string()), case["message"], "{}", case["name"]);
    }
    for case in doc["mutations"].as_array().unwrap() {
        let mut r = states[case["step"].as_u64().unwrap() as usize].clone();
        match r.apply(&unhex(case["hex"].as_str().unwrap()), &k) {
            Ok(_) => {
                assert!(case["error"].is_null(), "{case}");
                assert_eq!(canon(entities_json(&r)), case["entities"]);
                assert_eq!(canon(own_json(r.own)), case["own"]);
            }
            Err(e) => assert_eq!(json!(variant(&e)), case["error"], "{case}"),
        }
    }
    // Client messages decode to what they say.
    for input in doc["client"]["inputs"].as_array().unwrap() {
        let m = unhex(input["hex"].as_str().unwrap());
        let decoded = bin::decode_client::<DotInput>(&m).unwrap();
        let expect = playfield::protocol::ClientMessage::Input {
            seq: input["seq"].as_u64().unwrap() as u32,
            input: DotInput::steer(input["x"].as_f64().unwrap(), input["y"].as_f64().unwrap()),
        };
        assert_eq!(decoded, expect);
    }
    for ping in doc["client"]["pings"].as_array().unwrap() {
        let m = unhex(ping["hex"].as_str().unwrap());
        assert_eq!(
            bin::decode_client::<DotInput>(&m).unwrap(),
            playfield::protocol::ClientMessage::Ping {
                id: ping["id"].as_u64().unwrap()
            }
        );
    }
}
