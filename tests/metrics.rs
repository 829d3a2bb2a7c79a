//! `GET /metrics` against a real server: what the clients did shows up.

mod common;

use std::time::Duration;

use common::*;
use playfield::game::{Game, PlayerId, Settings};
use playfield::replicate::{Entity, Field, FieldKind, Schema, Value, World};
use serde_json::json;

/// The value of one sample line (`name{labels} value`), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn scrape(server: &TestServer) -> String {
    let (status, head, body) = http_get(&server.http("/metrics")).await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("application/openmetrics-text"),
        "Prometheus content type: {head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    body
}

#[tokio::test]
async fn metrics_count_what_clients_do() {
    let server = TestServer::with(|c| {
        c.allowed_origins =
            playfield::config::AllowedOrigins::parse("https://game.example").unwrap();
        c.input_buffer = 1;
    })
    .await;
    let mut native = server.native("?room=m").await;
    let _ = next_of(&mut native, "welcome").await;
    let mut seed = server.seed_in("m").await;
    let _ = next_of(&mut seed, "init").await;
    // A bad message, and a burst of inputs that overflows a queue of one.
    send_text(&mut native, "{nope").await;
    let err = next_of(&mut native, "error").await;
    assert_eq!(err["code"], "invalid_json");
    for seq in 1..=20 {
        send_json(
            &mut native,
            json!({"type":"input","seq":seq,"input":{"x":1,"y":0}}),
        )
        .await;
    }
    // A browser from a page that is not allowed.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        server.url("/ws"),
    )
    .unwrap();
    req.headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    // Let a few ticks go by.
    for _ in 0..5 {
        let _ = next_of(&mut native, "snapshot").await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let text = scrape(&server).await;
    let at_least = |series: &str, min: f64| {
        let v = sample(&text, series).unwrap_or_else(|| panic!("{series} missing in\n{text}"));
        assert!(v >= min, "{series} = {v}, expected at least {min}\n{text}");
    };
    at_least("playfield_rooms", 1.0);
    at_least("playfield_players{room=\"m\"}", 2.0);
    at_least("playfield_connections_open", 2.0);
    at_least("playfield_connections_accepted_total", 3.0);
    at_least("playfield_websockets_accepted_total", 2.0);
    at_least(
        "playfield_connections_refused_total{reason=\"origin\"}",
        1.0,
    );
    at_least("playfield_tick_seconds_count", 5.0);
    at_least("playfield_ticks_overrun_total", 0.0);
    at_least("playfield_fanout_seconds_count", 5.0);
    at_least(
        "playfield_protocol_errors_total{kind=\"invalid_json\"}",
        1.0,
    );
    at_least("playfield_inputs_dropped_total", 1.0);
    at_least(
        "playfield_messages_in_total{protocol=\"playfield.v1.json\"}",
        21.0,
    );
    at_least(
        "playfield_bytes_in_total{protocol=\"playfield.v1.json\"}",
        200.0,
    );
    at_least("playfield_messages_out_total{protocol=\"seed\"}", 5.0);
    at_least(
        "playfield_messages_out_total{protocol=\"playfield.v1.json\"}",
        6.0,
    );
    at_least("playfield_players_suspended", 0.0);
    at_least("playfield_resident_memory_bytes", 1e6);
    at_least("playfield_open_fds", 3.0);

    // Gone rooms are not reported; the gauges follow.
    drop(native);
    drop(seed);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = scrape(&server).await;
        // The native player is kept for a resume (suspended), the seed one left.
        if sample(&text, "playfield_players{room=\"m\"}") == Some(1.0)
            && sample(&text, "playfield_players_suspended") == Some(1.0)
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A game whose tick stalls now and then (as an overloaded machine would):
/// the room then runs the missed ticks back to back, and its sessions only
/// send the newest snapshot, skipping the others.
struct Sluggish {
    players: Vec<PlayerId>,
    ticks: u64,
}

static SCHEMA: Schema = Schema {
    collection: "things",
    fields: &[Field {
        name: "n",
        kind: FieldKind::Int,
    }],
};

impl Game for Sluggish {
    type Input = u8;
    type Info = serde_json::Value;
    const SCHEMA: &'static Schema = &SCHEMA;
    fn new(_: &Settings) -> Self {
        Sluggish {
            players: Vec::new(),
            ticks: 0,
        }
    }
    fn join(&mut self, player: PlayerId) {
        self.players.push(player);
    }
    fn leave(&mut self, player: PlayerId) {
        self.players.retain(|&p| p != player);
    }
    fn input(&mut self, _: PlayerId, _: u8) {}
    fn tick(&mut self) {
        self.ticks += 1;
        if self.ticks.is_multiple_of(10) {
            // Blocks the (single-threaded) runtime on purpose: four ticks late.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    fn replicate(&self, world: &mut World) {
        for &p in &self.players {
            let n = i64::try_from(self.ticks).unwrap_or(0);
            world.push(
                Entity {
                    id: p,
                    x: 0.0,
                    y: 0.0,
                },
                [Value::Int(n)],
            );
        }
    }
    fn info(&self) -> serde_json::Value {
        json!({})
    }
}

/// Stalled ticks show as overruns, and the snapshots a client never got
/// (it was sent a newer one) as skipped.
#[tokio::test]
async fn stalls_show_as_overruns_and_skipped_snapshots() {
    let server = TestServer::with_game::<Sluggish>(|_| {}).await;
    let mut ws = server.native("").await;
    let _ = next_of(&mut ws, "welcome").await;
    let mut last = 0;
    let mut gaps = 0;
    while gaps < 2 {
        let tick = next_of(&mut ws, "snapshot").await["tick"].as_u64().unwrap();
        if last > 0 && tick > last + 1 {
            gaps += 1;
        }
        last = tick;
        assert!(tick < 200, "no snapshot was skipped in 200 ticks");
    }
    let text = scrape(&server).await;
    let skipped = sample(&text, "playfield_snapshots_skipped_total").unwrap();
    let overrun = sample(&text, "playfield_ticks_overrun_total").unwrap();
    assert!(skipped >= 2.0, "skipped {skipped}\n{text}");
    assert!(overrun >= 2.0, "overrun {overrun}\n{text}");
}
