//! The server is a framework: any `Game` gets rooms, the native protocol,
//! limits and all the rest. This one is a shared counter, nothing like dots.

mod common;

use std::collections::BTreeMap;

use common::*;
use playfield::game::{Game, PlayerId, Settings};
use playfield::protocol::bin;
use playfield::replicate::{Entity, Field, FieldKind, Schema, Value, World};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Every player may add -5..=5 per tick to their own score and to a shared
/// total. Each player is an entity with an `Int` score at their own spot on a
/// line; the total is entity 0. Nothing here encodes anything: JSON, binary
/// deltas and per-client views come from the schema.
struct Counter {
    total: i64,
    scores: BTreeMap<PlayerId, (i64, f64)>,
    next_spot: f64,
}

#[derive(Deserialize, Serialize)]
struct Add {
    add: i64,
}

static SCHEMA: Schema = Schema {
    collection: "counters",
    fields: &[
        Field {
            name: "score",
            kind: FieldKind::Int,
        },
        Field {
            name: "total",
            kind: FieldKind::Bool,
        },
    ],
};

impl Game for Counter {
    type Input = Add;
    type Info = serde_json::Value;
    const SCHEMA: &'static Schema = &SCHEMA;

    fn new(_settings: &Settings) -> Self {
        Counter {
            total: 0,
            scores: BTreeMap::new(),
            next_spot: 0.0,
        }
    }
    fn join(&mut self, player: PlayerId) {
        self.next_spot += 100.0;
        self.scores.insert(player, (0, self.next_spot));
    }
    fn leave(&mut self, player: PlayerId) {
        self.scores.remove(&player);
    }
    fn input(&mut self, player: PlayerId, input: Add) {
        let add = input.add.clamp(-5, 5);
        self.total += add;
        if let Some((score, _)) = self.scores.get_mut(&player) {
            *score += add;
        }
    }
    fn tick(&mut self) {}
    fn replicate(&self, world: &mut World) {
        let entity = |id, x| Entity { id, x, y: 0.0 };
        world.push(entity(0, 0.0), [Value::Int(self.total), Value::Bool(true)]);
        for (&p, &(score, x)) in &self.scores {
            world.push(entity(p, x), [Value::Int(score), Value::Bool(false)]);
        }
    }
    fn info(&self) -> serde_json::Value {
        json!({"game": "counter", "max_add": 5})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_game_gets_rooms_protocol_and_limits() {
    let server = TestServer::with_game::<Counter>(|c| c.room_capacity = 2).await;
    let mut a = server.native("?room=count").await;
    let welcome = next_of(&mut a, "welcome").await;
    assert_eq!(welcome["world"], json!({"game": "counter", "max_add": 5}));
    let a_id = welcome["id"].clone();
    let mut b = server.native("?room=count").await;
    let _ = next_of(&mut b, "welcome").await;

    send_json(&mut a, json!({"type":"input","seq":1,"input":{"add":100}})).await;
    send_json(&mut a, json!({"type":"input","seq":2,"input":{"add":3}})).await;
    let s = wait_for(&mut a, "snapshot", |s| s["ack"] == 2).await;
    let counters = &s["state"]["counters"];
    assert_eq!(counters[0]["score"], 8, "total: clamped to 5, then 3: {s}");
    assert_eq!(counters[0]["total"], true);
    assert_eq!(counters[1]["id"], a_id);
    assert_eq!(counters[1]["score"], 8);
    wait_for(&mut b, "snapshot", |s| {
        s["state"]["counters"][0]["score"] == 8
    })
    .await;

    // The game's own input type is checked, with the same errors.
    send_json(
        &mut a,
        json!({"type":"input","seq":3,"input":{"x":1,"y":0}}),
    )
    .await;
    let e = next_of(&mut a, "error").await;
    assert_eq!(e["code"], "invalid_message");

    // Room capacity applies to any game.
    let mut c = server.native("?room=count").await;
    assert_eq!(next_of(&mut c, "error").await["code"], "room_full");

    // The seed client cannot play a game without seed support: told why.
    let mut seed = server.seed_in("other").await;
    let e = next_of(&mut seed, "error").await;
    assert_eq!(e["code"], "unsupported_protocol");
    let close = expect_close(&mut seed).await;
    assert_eq!(u16::from(close.code), 1008);
    assert!(
        close.reason.contains("playfield.v1.json"),
        "{}",
        close.reason
    );
}

/// The custom game gets binary delta snapshots from its schema alone: a
/// score change is one small `UPDATE` record, and a reference decoder built
/// from the `schema` in `welcome` tracks the state exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_game_gets_binary_deltas_from_its_schema() {
    let server = TestServer::with_game::<Counter>(|_| {}).await;
    let mut a = server.bin("?room=count").await;
    let welcome = next_of(&mut a, "welcome").await;
    let kinds = schema_kinds(&welcome);
    assert_eq!(kinds, [FieldKind::Int, FieldKind::Bool]);
    let me = welcome["id"].as_u64().unwrap();
    let mut replica = bin::Replica::default();
    let first = next_binary(&mut a).await;
    let h = replica.apply(&first, &kinds).unwrap();
    assert_eq!(h.base, 0, "the first snapshot is a full one");
    assert_eq!(replica.entities.len(), 2);

    send_binary(&mut a, bin::encode_input(1, &Add { add: 4 })).await;
    let mut sizes = Vec::new();
    loop {
        let msg = next_binary(&mut a).await;
        let h = replica.apply(&msg, &kinds).unwrap();
        assert_eq!(h.base, 1, "then deltas");
        sizes.push(msg.len());
        if h.ack == 1 {
            break;
        }
    }
    assert_eq!(replica.entities[&0].fields[0], Value::Int(4));
    assert_eq!(replica.entities[&me].fields[0], Value::Int(4));
    assert_eq!(replica.entities[&me].x, 800, "100 px in 1/8 px units");
    // Header (4 bytes) + two UPDATE records of 3 bytes (head, mask, score).
    assert!(sizes.last().unwrap() <= &10, "{sizes:?}");
    // Unchanged ticks are a bare header.
    let idle = next_binary(&mut a).await;
    replica.apply(&idle, &kinds).unwrap();
    assert_eq!(idle.len(), 4, "{idle:?}");
}
