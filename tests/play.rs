//! The game as clients see it: the seed flow, the native protocol, movement,
//! rooms. Real server, real WebSocket clients, loopback only.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::time::Instant;

/// The seed's flow, message by message: `init` with a string id, then a
/// `state_update` every tick listing us with position and colour, and `move`
/// steps of 10 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_flow_message_by_message() {
    let server = TestServer::start().await;
    let mut ws = server.seed().await;
    let init = next_json(&mut ws).await;
    assert_eq!(init["type"], "init");
    let id = init["id"].clone();
    assert!(id.is_string(), "seed ids are strings: {init}");
    assert_eq!(
        init.as_object().unwrap().len(),
        2,
        "init has exactly type and id"
    );

    let update = next_json(&mut ws).await;
    assert_eq!(update["type"], "state_update");
    let me = update["players"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap()
        .clone();
    assert!(
        me["x"].is_i64() && me["y"].is_i64(),
        "integers, as the seed sends: {me}"
    );
    let (x, y) = (me["x"].as_f64().unwrap(), me["y"].as_f64().unwrap());
    assert!((50.0..=450.0).contains(&x) && (50.0..=450.0).contains(&y));
    let color = me["color"].as_str().unwrap();
    assert!(color.len() == 7 && color.starts_with('#'));
    assert!(color[1..].chars().all(|c| c.is_ascii_hexdigit()));

    send_json(&mut ws, json!({"type":"move","direction":"DOWN"})).await;
    let moved = wait_for(&mut ws, "state_update", |u| {
        find(&u["players"], &id) != Some((x, y))
    })
    .await;
    assert_eq!(find(&moved["players"], &id), Some((x, y + 10.0)));
}

/// Ids are sequential per server, and two clients see each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_see_each_other() {
    let server = TestServer::start().await;
    let mut a = server.seed().await;
    let a_id = next_of(&mut a, "init").await["id"].clone();
    let mut b = server.native("").await;
    let welcome = next_of(&mut b, "welcome").await;
    let b_id = welcome["id"].clone();
    assert_eq!(
        b_id.as_u64().unwrap(),
        a_id.as_str().unwrap().parse::<u64>().unwrap() + 1
    );
    let b_as_seed = Value::String(b_id.to_string());
    wait_for(&mut a, "state_update", |u| {
        find(&u["players"], &a_id).is_some() && find(&u["players"], &b_as_seed).is_some()
    })
    .await;
    let a_as_native = json!(a_id.as_str().unwrap().parse::<u64>().unwrap());
    wait_for(&mut b, "snapshot", |s| {
        find(players(s), &a_as_native).is_some() && find(players(s), &b_id).is_some()
    })
    .await;
}

/// The native welcome tells a client everything it needs to predict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_welcome_snapshot_ack_and_pong() {
    let server = TestServer::start().await;
    let mut ws = server.native("?room=native").await;
    let w = next_json(&mut ws).await;
    assert_eq!(w["type"], "welcome");
    assert_eq!(w["protocol"], 1);
    assert_eq!(w["room"], "native");
    assert_eq!(w["tick_rate"], 20);
    assert_eq!(w["input_buffer"], 4);
    assert!(w["server_time"].as_f64().unwrap() > 1.6e12);
    assert_eq!(w["world"]["width"], 500.0);
    assert_eq!(w["world"]["speed"], 200.0);
    assert_eq!(w["world"]["min"], 10.0);
    assert_eq!(w["world"]["max"], 490.0);
    let id = w["id"].clone();

    let s1 = next_of(&mut ws, "snapshot").await;
    assert_eq!(s1["ack"], 0);
    let (x, y) = find(players(&s1), &id).unwrap();
    // A diagonal is normalised: one tick moves 10 px along it.
    let dx: i32 = if x < 250.0 { 1 } else { -1 };
    let dy: i32 = if y < 250.0 { 1 } else { -1 };
    send_json(
        &mut ws,
        json!({"type":"input","seq":1,"input":{"x":dx,"y":dy}}),
    )
    .await;
    let s2 = wait_for(&mut ws, "snapshot", |s| s["ack"] == 1).await;
    let (x2, y2) = find(players(&s2), &id).unwrap();
    let dist = ((x2 - x).powi(2) + (y2 - y).powi(2)).sqrt();
    assert!((dist - 10.0).abs() < 0.01, "moved {dist} px");
    assert!(s2["tick"].as_u64() > s1["tick"].as_u64());

    send_json(&mut ws, json!({"type":"ping","id":42})).await;
    let pong = next_of(&mut ws, "pong").await;
    assert_eq!(pong["id"], 42);
    assert!(pong["server_time"].as_f64().unwrap() > 1.6e12);
}

/// Holding a key in the seed client (a move every 50 ms) moves at full speed;
/// walking into a wall stops at the 10 px margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_key_full_speed_and_clamping() {
    let server = TestServer::start().await;
    let mut ws = server.seed().await;
    let id = next_of(&mut ws, "init").await["id"].clone();
    let first = next_of(&mut ws, "state_update").await;
    let (x0, _) = find(&first["players"], &id).unwrap();
    let dir = if x0 < 250.0 { "RIGHT" } else { "LEFT" };

    // One second of holding the key, paced like the seed client's setInterval
    // (which never bursts after a stall, so neither may we).
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut sent = 0;
    while sent < 20 {
        pace.tick().await;
        send_json(&mut ws, json!({"type":"move","direction":dir})).await;
        sent += 1;
    }
    let elapsed = start.elapsed();
    // Exactly 200 px: every move applied once, none lost to timing jitter...
    let target = if dir == "RIGHT" {
        x0 + 200.0
    } else {
        x0 - 200.0
    };
    // Tick by tick, the dot moves 10 px or not at all; a pause means the move
    // for that tick was late. The input buffer absorbs the seed client's timer
    // jitter, so pauses stay rare: no stutter.
    let mut xs = vec![x0];
    while *xs.last().unwrap() != target {
        let u = next_of(&mut ws, "state_update").await;
        xs.push(find(&u["players"], &id).unwrap().0);
        assert!(xs.len() < 80, "never reached {target}: {xs:?}");
    }
    let steps: Vec<f64> = xs.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    assert!(steps.iter().all(|&d| d == 0.0 || d == 10.0), "{steps:?}");
    let moving = steps.iter().position(|&d| d > 0.0).unwrap_or(0);
    let pauses = steps[moving..].iter().filter(|&&d| d == 0.0).count();
    assert!(pauses <= 3, "stuttered: {pauses} pauses in {steps:?}");
    // ...and no more.
    for _ in 0..4 {
        let u = next_of(&mut ws, "state_update").await;
        assert_eq!(
            find(&u["players"], &id).unwrap().0,
            target,
            "20 moves = 200 px (took {elapsed:?})"
        );
    }
    let x1 = target;

    // Now run into the wall with many more moves than needed.
    let wall_dir = if x1 < 250.0 { "LEFT" } else { "RIGHT" };
    let wall = if wall_dir == "LEFT" { 10.0 } else { 490.0 };
    for _ in 0..60 {
        pace.tick().await;
        send_json(&mut ws, json!({"type":"move","direction":wall_dir})).await;
    }
    let at_wall = wait_for(&mut ws, "state_update", |u| {
        find(&u["players"], &id).map(|p| p.0) == Some(wall)
    })
    .await;
    assert_eq!(find(&at_wall["players"], &id).unwrap().0, wall);
    for _ in 0..3 {
        let u = next_of(&mut ws, "state_update").await;
        assert_eq!(find(&u["players"], &id).unwrap().0, wall, "stays clamped");
    }
}

/// A client that floods moves gains no speed: at most 10 px per tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_gains_no_speed() {
    // This is about the input queue: with the message rate limit out of the
    // way, every one of the 1000 inputs reaches it (tests/limits.rs covers
    // the rate limit, which drops most of such a flood unread).
    let server = TestServer::with(|c| {
        c.max_messages_per_sec = Some(1_000_000);
        c.message_burst = 1_000_000;
    })
    .await;
    let mut flood = server.native("?room=flood").await;
    let id = next_of(&mut flood, "welcome").await["id"].clone();
    let s0 = next_of(&mut flood, "snapshot").await;
    let (x0, _) = find(players(&s0), &id).unwrap();
    let dx = if x0 < 250.0 { 1 } else { -1 };
    let mut seed = server.seed_in("flood").await;
    let seed_id = next_of(&mut seed, "init").await["id"].clone();
    let u0 = next_of(&mut seed, "state_update").await;
    let (sx0, _) = find(&u0["players"], &seed_id).unwrap();
    let sdir = if sx0 < 250.0 { "RIGHT" } else { "LEFT" };

    let flood_start = Instant::now();
    for seq in 1..=1000u32 {
        send_json(
            &mut flood,
            json!({"type":"input","seq":seq,"input":{"x":dx,"y":0}}),
        )
        .await;
        send_json(&mut seed, json!({"type":"move","direction":sdir})).await;
    }
    // Ticks that may have drained a queue while the flood was being sent.
    let flood_ticks = (flood_start.elapsed().as_millis() / 50) as f64 + 1.0;
    // Watch the next ticks: never more than 10 px per elapsed tick.
    let mut last: Option<(u64, f64)> = None;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(600) {
        let s = next_of(&mut flood, "snapshot").await;
        let tick = s["tick"].as_u64().unwrap();
        let (x, _) = find(players(&s), &id).unwrap();
        if let Some((t, px)) = last {
            assert!(
                (x - px).abs() <= 10.0 * (tick - t) as f64 + 1e-3,
                "moved {} px in {} ticks",
                (x - px).abs(),
                tick - t
            );
        }
        last = Some((tick, x));
    }
    // Of the 1000 inputs only the queue's 4 (plus one per tick that passed
    // while sending) were applied; the rest were dropped, so the dots stop.
    let most = 10.0 * (4.0 + flood_ticks);
    for _ in 0..5 {
        let s = next_of(&mut flood, "snapshot").await;
        let moved = (find(players(&s), &id).unwrap().0 - x0).abs();
        assert!(
            (40.0..=most).contains(&moved),
            "native flood moved {moved} px (at most {most})"
        );
    }
    // The dropped inputs are acknowledged too, so a predicting client does
    // not replay them for ever.
    wait_for(&mut flood, "snapshot", |s| s["ack"] == 1000).await;
    let mut seed_positions = Vec::new();
    for _ in 0..30 {
        let u = next_of(&mut seed, "state_update").await;
        seed_positions.push(find(&u["players"], &seed_id).unwrap().0);
    }
    let settled = *seed_positions.last().unwrap();
    let moved = (settled - sx0).abs();
    assert!(
        (40.0..=most).contains(&moved),
        "seed flood moved {moved} px (at most {most})"
    );
    let _ = sdir;
}

/// A player who disconnects disappears for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_removes_the_player() {
    let server = TestServer::start().await;
    let mut a = server.seed().await;
    let _ = next_of(&mut a, "init").await;
    let mut b = server.seed().await;
    let b_id = next_of(&mut b, "init").await["id"].clone();
    wait_for(&mut a, "state_update", |u| {
        find(&u["players"], &b_id).is_some()
    })
    .await;
    drop(b);
    wait_for(&mut a, "state_update", |u| {
        find(&u["players"], &b_id).is_none()
    })
    .await;
    let (_, _, body) = http_get(&server.http("/rooms")).await;
    let rooms: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rooms["rooms"][0]["players"], 1);
}

/// Rooms do not see each other, are listed with counts, and vanish when empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_isolated_listed_and_removed() {
    let server = TestServer::start().await;
    let mut a = server.native("?room=red").await;
    let a_id = next_of(&mut a, "welcome").await["id"].clone();
    let mut b = server.native("?room=blue").await;
    let b_id = next_of(&mut b, "welcome").await["id"].clone();
    let mut c = server.seed_in("blue").await;
    let _ = next_of(&mut c, "init").await;
    for _ in 0..3 {
        let s = next_of(&mut a, "snapshot").await;
        assert_eq!(players(&s).as_array().unwrap().len(), 1);
        assert!(find(players(&s), &a_id).is_some());
    }
    wait_for(&mut b, "snapshot", |s| {
        players(s).as_array().unwrap().len() == 2
    })
    .await;
    let s = next_of(&mut b, "snapshot").await;
    assert!(find(players(&s), &a_id).is_none() && find(players(&s), &b_id).is_some());

    let (status, head, body) = http_get(&server.http("/rooms")).await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("application/json"));
    let v: Value = serde_json::from_str(&body).unwrap();
    let rooms: Vec<Value> = v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({"name": r["name"], "players": r["players"], "capacity": r["capacity"]}))
        .collect();
    assert_eq!(
        rooms,
        [
            json!({"name":"blue","players":2,"capacity":64}),
            json!({"name":"red","players":1,"capacity":64})
        ]
    );
    // Each room reports how long its ticks take.
    for kind in ["tick", "fanout"] {
        let t = &v["rooms"][0][kind];
        assert!(t["count"].as_u64().unwrap() > 0, "{kind}: {t}");
        assert!(t["p99_ms"].as_f64().unwrap() >= t["p50_ms"].as_f64().unwrap());
    }
    assert_eq!(v["players"], 3);

    leave(a).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, _, body) = http_get(&server.http("/rooms")).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        if v["rooms"].as_array().unwrap().len() == 1 {
            assert_eq!(v["rooms"][0]["name"], "blue");
            break;
        }
        assert!(Instant::now() < deadline, "empty room not removed: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One port: the page at `/`, WebSockets at `/` and `/ws`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_client_page() {
    let server = TestServer::start().await;
    let (status, head, body) = http_get(&server.http("/")).await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("text/html"));
    assert!(body.to_ascii_lowercase().contains("<!doctype html"));
    // A query the WebSocket would refuse does not break the page.
    let (status, _, _) = http_get(&server.http("/?room=a&room=b")).await;
    assert_eq!(status, 200);
    let (status, _, _) = http_get(&server.http("/no-such-file.js")).await;
    assert_eq!(status, 404);
    let (status, _, body) = http_get(&server.http("/healthz")).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// At other tick rates a seed `move` is still 10 px: the seed client holding
/// a key still moves 200 px a second on a 60 Hz server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_speed_does_not_depend_on_tick_rate() {
    let server = TestServer::with(|c| c.tick_rate = 60).await;
    let mut ws = server.seed().await;
    let id = next_of(&mut ws, "init").await["id"].clone();
    let first = next_of(&mut ws, "state_update").await;
    let (x0, _) = find(&first["players"], &id).unwrap();
    let (dir, target) = if x0 < 250.0 {
        ("RIGHT", x0 + 200.0)
    } else {
        ("LEFT", x0 - 200.0)
    };
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..20 {
        pace.tick().await;
        send_json(&mut ws, json!({"type":"move","direction":dir})).await;
    }
    wait_for(&mut ws, "state_update", |u| {
        find(&u["players"], &id).map(|p| p.0) == Some(target)
    })
    .await;
    for _ in 0..6 {
        let u = next_of(&mut ws, "state_update").await;
        assert_eq!(
            find(&u["players"], &id).unwrap().0,
            target,
            "20 moves = 200 px at 60 Hz"
        );
    }
}

/// In a world larger than the view, each client only receives what is
/// around its own dot, on every protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_world_shows_each_client_its_surroundings() {
    let server = TestServer::with(|c| {
        c.world_size = 20_000.0;
        c.view_size = 500.0;
        c.room_capacity = 100;
    })
    .await;
    // Spawns are uniform over 20,000 px: with 30 players, almost nobody is
    // within 500 px of anybody, and everybody sees themselves.
    let mut clients = Vec::new();
    for _ in 0..30 {
        let mut ws = server.bin("").await;
        let welcome = next_of(&mut ws, "welcome").await;
        assert_eq!(welcome["view_size"], 500.0);
        assert_eq!(welcome["world"]["width"], 20_000.0);
        clients.push((ws, welcome));
    }
    let mut seen_total = 0;
    for (ws, welcome) in &mut clients {
        let kinds = schema_kinds(welcome);
        let mut r = playfield::protocol::bin::Replica::default();
        // Skip the snapshots from before everyone had joined.
        for _ in 0..3 {
            r.apply(&next_binary(ws).await, &kinds).unwrap();
        }
        let me = welcome["id"].as_u64().unwrap();
        let (x, y) = r.own.expect("own exact position");
        assert!(r.entities.contains_key(&me));
        for e in r.entities.values() {
            // Cells are 250 px: nothing further than a view and a cell away.
            assert!((e.x as f64 / 8.0 - x).abs() <= 750.0);
            assert!((e.y as f64 / 8.0 - y).abs() <= 750.0);
        }
        seen_total += r.entities.len();
    }
    assert!(seen_total < 30 * 10, "views are local, saw {seen_total}");

    // JSON clients get their surroundings too, seed clients a 500 px window
    // around their dot with translated coordinates.
    let mut json = server.native("").await;
    let _ = next_of(&mut json, "welcome").await;
    let s = next_of(&mut json, "snapshot").await;
    assert!(players(&s).as_array().unwrap().len() < 30);
    let mut seed = server.seed().await;
    let init = next_of(&mut seed, "init").await;
    let s = next_of(&mut seed, "state_update").await;
    let (x, y) = find(players(&s), &init["id"]).expect("the seed client sees itself");
    assert!((0.0..=500.0).contains(&x) && (0.0..=500.0).contains(&y));
}
