//! The server is a framework: any `Game` gets rooms, the native protocol,
//! limits and all the rest. This one is a shared counter, nothing like dots.

mod common;

use std::collections::BTreeMap;

use common::*;
use playfield::game::{Game, PlayerId};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Every player may add -5..=5 per tick to one shared total.
struct Counter {
    total: i64,
    scores: BTreeMap<PlayerId, i64>,
}

#[derive(Deserialize)]
struct Add {
    add: i64,
}

#[derive(Serialize)]
struct CounterView {
    total: i64,
    scores: Vec<(PlayerId, i64)>,
}

impl Game for Counter {
    type Input = Add;
    type Snapshot = CounterView;
    type Info = serde_json::Value;

    fn new(_seed: u64, _tick_rate: u32) -> Self {
        Counter {
            total: 0,
            scores: BTreeMap::new(),
        }
    }
    fn join(&mut self, player: PlayerId) {
        self.scores.insert(player, 0);
    }
    fn leave(&mut self, player: PlayerId) {
        self.scores.remove(&player);
    }
    fn input(&mut self, player: PlayerId, input: Add) {
        let add = input.add.clamp(-5, 5);
        self.total += add;
        if let Some(score) = self.scores.get_mut(&player) {
            *score += add;
        }
    }
    fn tick(&mut self) {}
    fn snapshot(&self) -> CounterView {
        CounterView {
            total: self.total,
            scores: self.scores.iter().map(|(&p, &s)| (p, s)).collect(),
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
    assert_eq!(s["state"]["total"], 8, "clamped to 5, then 3: {s}");
    assert_eq!(s["state"]["scores"][0], json!([a_id, 8]));
    wait_for(&mut b, "snapshot", |s| s["state"]["total"] == 8).await;

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
