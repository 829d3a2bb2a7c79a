//! When the server itself fails: a game that panics, a session that panics.
//! Each is logged through `tracing`, nobody is left in a dead room, and no
//! seat or player count leaks.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use playfield::game::{Game, PlayerId, Settings};
use playfield::replicate::{Entity, Field, FieldKind, Schema, Value, World};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use tokio::time::Instant;

/// A game that panics on input 13 (in the room task), and whose input
/// decoder panics on 255 (in the session task).
struct Fragile {
    players: Vec<PlayerId>,
}

struct Poke(u8);

impl<'de> Deserialize<'de> for Poke {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u8::deserialize(d)?;
        assert_ne!(v, 255, "fragile decoder: poisoned input");
        Ok(Poke(v))
    }
}

static SCHEMA: Schema = Schema {
    collection: "things",
    fields: &[Field {
        name: "n",
        kind: FieldKind::Int,
    }],
};

impl Game for Fragile {
    type Input = Poke;
    type Info = serde_json::Value;
    const SCHEMA: &'static Schema = &SCHEMA;
    fn new(_: &Settings) -> Self {
        Fragile {
            players: Vec::new(),
        }
    }
    fn join(&mut self, player: PlayerId) {
        self.players.push(player);
    }
    fn leave(&mut self, player: PlayerId) {
        self.players.retain(|&p| p != player);
    }
    fn input(&mut self, _: PlayerId, input: Poke) {
        assert_ne!(input.0, 13, "fragile game: unlucky poke");
    }
    fn tick(&mut self) {}
    fn replicate(&self, world: &mut World) {
        for &p in &self.players {
            world.push(
                Entity {
                    id: p,
                    x: 0.0,
                    y: 0.0,
                },
                [Value::Int(1)],
            );
        }
    }
    fn info(&self) -> serde_json::Value {
        json!({})
    }
}

/// Everything the server logs in this test binary.
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .try_init();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&log().lock().unwrap()).to_string()
}

async fn rooms(server: &TestServer) -> serde_json::Value {
    let (_, _, body) = http_get(&server.http("/rooms")).await;
    serde_json::from_str(&body).unwrap()
}

/// Polls `/rooms` until `pred` holds.
async fn rooms_until(
    server: &TestServer,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = rooms(server).await;
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A game that panics takes down its room only: the panic is logged with
/// the room's name, the room leaves the registry, its players are closed
/// with 1011 and a reason, other rooms play on, and the name can be used
/// again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_game_closes_its_room_1011() {
    let log = log();
    let server = TestServer::with_game::<Fragile>(|_| {}).await;
    let mut safe = server.native("?room=safe").await;
    let _ = next_of(&mut safe, "welcome").await;
    let mut a = server.native("?room=doomed").await;
    let _ = next_of(&mut a, "welcome").await;
    let mut b = server.bin("?room=doomed").await;
    let _ = next_of(&mut b, "welcome").await;
    rooms_until(&server, |v| v["players"] == 3).await;

    send_json(&mut a, json!({"type":"input","seq":1,"input":13})).await;
    for ws in [&mut a, &mut b] {
        let close = expect_close(ws).await;
        assert_eq!(u16::from(close.code), 1011, "{}", close.reason);
        assert!(
            close.reason.contains("`doomed`") && close.reason.contains("reconnect"),
            "{}",
            close.reason
        );
    }
    // Gone from the registry by the time its players are told.
    let v = rooms(&server).await;
    let names: Vec<_> = v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, [json!("safe")], "{v}");
    rooms_until(&server, |v| v["players"] == 1).await;
    let text = String::from_utf8_lossy(&log.lock().unwrap()).to_string();
    let line = text
        .lines()
        .find(|l| l.contains("the game panicked"))
        .unwrap_or_else(|| panic!("not logged through tracing:\n{text}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("room=doomed"), "{line}");
    assert!(line.contains("fragile game: unlucky poke"), "{line}");

    // The other room never noticed, and the name works again.
    let t0 = next_of(&mut safe, "snapshot").await["tick"]
        .as_u64()
        .unwrap();
    let t1 = next_of(&mut safe, "snapshot").await["tick"]
        .as_u64()
        .unwrap();
    assert!(t1 > t0);
    let mut again = server.native("?room=doomed").await;
    let w = next_of(&mut again, "welcome").await;
    assert_eq!(w["room"], "doomed");
    let s = next_of(&mut again, "snapshot").await;
    assert_eq!(
        s["state"]["things"].as_array().unwrap().len(),
        1,
        "a fresh room: {s}"
    );
}

/// A session that panics (here in the game's input decoder) gives back its
/// seat and its place in the player count: in a room of one, the next
/// player gets in. Before, the seat leaked and the room stayed full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_session_gives_back_its_seat() {
    let _ = log();
    let server = TestServer::with_game::<Fragile>(|c| c.room_capacity = 1).await;
    let mut a = server.native("?room=solo").await;
    let _ = next_of(&mut a, "welcome").await;
    send_json(&mut a, json!({"type":"input","seq":1,"input":255})).await;
    // Its socket is dropped without a close frame: nothing to read any more.
    let end = tokio::time::timeout(WAIT, async {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = a.next().await {}
    })
    .await;
    assert!(end.is_ok(), "the panicked session's socket is still open");

    let v = rooms_until(&server, |v| v["players"] == 0).await;
    assert!(v["rooms"].as_array().unwrap().is_empty(), "{v}");
    let mut b = server.native("?room=solo").await;
    assert_eq!(
        next_json(&mut b).await["type"],
        "welcome",
        "the seat leaked"
    );
    let v = rooms_until(&server, |v| v["players"] == 1).await;
    assert_eq!(v["rooms"][0]["players"], 1, "{v}");
    let text = logged();
    let line = text
        .lines()
        .find(|l| l.contains("a session panicked"))
        .unwrap_or_else(|| panic!("not logged through tracing:\n{text}"));
    assert!(line.contains("fragile decoder: poisoned input"), "{line}");
    // Each connection's lines carry its span: connection id, peer, room, player.
    assert!(line.contains("conn{id="), "{line}");
    assert!(line.contains("peer=\"127.0.0.1:"), "{line}");
    assert!(line.contains("room=\"solo\""), "{line}");
    assert!(line.contains("player="), "{line}");
}
