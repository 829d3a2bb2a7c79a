//! Resume tokens against a real server: a dropped player comes back with
//! the same id, colour and position, the others never see it leave, and a
//! token works once, only for its player, and only within the grace period.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// The player `id` as the watcher (a native JSON client) sees it.
fn player(snapshot: &Value, id: &Value) -> Option<Value> {
    players(snapshot)
        .as_array()?
        .iter()
        .find(|p| &p["id"] == id)
        .cloned()
}

/// Moves the player sideways (`dx` 1: right, -1: left) for a few ticks.
async fn walk(ws: &mut Ws, dx: i32, from_seq: u32, steps: u32) {
    for seq in from_seq..from_seq + steps {
        send_json(ws, json!({"type":"input","seq":seq,"input":{"x":dx,"y":0}})).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A watcher, and a player it sees: `(watcher, player's socket, id, token)`.
async fn watched_player(server: &TestServer) -> (Ws, Ws, Value, String) {
    let mut watcher = server.native("").await;
    let _ = next_of(&mut watcher, "welcome").await;
    let mut ws = server.native("").await;
    let welcome = next_of(&mut ws, "welcome").await;
    let id = welcome["id"].clone();
    let token = welcome["resume_token"].as_str().unwrap().to_owned();
    wait_for(&mut watcher, "snapshot", |s| player(s, &id).is_some()).await;
    (watcher, ws, id, token)
}

/// The `error` and close a refused resume gets.
async fn refused(ws: &mut Ws) -> (String, u16, String) {
    let err = next_of(ws, "error").await;
    let close = expect_close(ws).await;
    (
        err["code"].as_str().unwrap().to_owned(),
        u16::from(close.code),
        close.reason.to_string(),
    )
}

#[tokio::test]
async fn a_dropped_player_resumes_with_the_same_id_colour_and_position() {
    let server = TestServer::start().await;
    let mut watcher = server.native("?room=r").await;
    let _ = next_of(&mut watcher, "welcome").await;
    let mut ws = server.native("?room=r").await;
    let welcome = next_of(&mut ws, "welcome").await;
    let id = welcome["id"].clone();
    let token = welcome["resume_token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 32, "128 bits as hex: {token}");
    assert_eq!(welcome["resumed"], false);
    // Read the watcher up to the player's arrival (its earlier snapshots,
    // still buffered, do not have it yet).
    wait_for(&mut watcher, "snapshot", |s| player(s, &id).is_some()).await;
    walk(&mut ws, 1, 1, 5).await;
    // The connection drops: no close frame.
    drop(ws);
    // The watcher sees the player all along; it comes to rest where its
    // last input left it, and stays there.
    let mut before = Value::Null;
    let mut still = 0;
    for _ in 0..100 {
        let s = next_of(&mut watcher, "snapshot").await;
        let p = player(&s, &id).expect("the player never leaves");
        if p == before {
            still += 1;
            if still == 10 {
                break;
            }
        } else {
            (before, still) = (p, 0);
        }
    }
    assert_eq!(still, 10, "the player came to rest");
    let mut back = server.native(&format!("?room=r&resume={token}")).await;
    let again = next_of(&mut back, "welcome").await;
    assert_eq!(again["id"], id, "same player");
    assert_eq!(again["room"], "r");
    assert_eq!(again["resumed"], true);
    assert_eq!(again["last_seq"], 5, "inputs go on above the last seq");
    let fresh = again["resume_token"].as_str().unwrap();
    assert_ne!(fresh, token, "a fresh token");
    // The first snapshot is a full one with the same dot where it was.
    let s = next_of(&mut back, "snapshot").await;
    assert_eq!(player(&s, &id), Some(before.clone()));
    let s = next_of(&mut watcher, "snapshot").await;
    assert_eq!(player(&s, &id), Some(before.clone()));
    // And it plays on (leftwards: rightwards it may stand at the edge).
    walk(&mut back, -1, 6, 3).await;
    let moved = wait_for(&mut watcher, "snapshot", |s| {
        player(s, &id).is_some_and(|p| p["x"] != before["x"])
    })
    .await;
    assert_eq!(player(&moved, &id).unwrap()["color"], before["color"]);
    // The old token is used up; reusing it does not disturb the player.
    let mut thief = server.native(&format!("?resume={token}")).await;
    let (code, close, reason) = refused(&mut thief).await;
    assert_eq!((code.as_str(), close), ("resume_used", 4001), "{reason}");
    assert!(reason.contains("already used"), "{reason}");
    let s = next_of(&mut back, "snapshot").await;
    assert!(player(&s, &id).is_some(), "the holder plays on");
    // The resume shows in the metrics.
    let (status, head, body) = http_get(&server.http("/metrics")).await;
    assert_eq!(status, 200);
    assert!(head.contains("openmetrics-text"), "{head}");
    assert!(body.contains("playfield_resumes_total 1"), "{body}");
    assert!(body.contains("playfield_players{room=\"r\"} 2"), "{body}");
    assert!(
        body.contains("playfield_connections_refused_total{reason=\"resume_refused\"} 1"),
        "{body}"
    );
}

#[tokio::test]
async fn binary_clients_resume_too() {
    let server = TestServer::start().await;
    let mut ws = server.bin("").await;
    let welcome = next_of(&mut ws, "welcome").await;
    let token = welcome["resume_token"].as_str().unwrap().to_owned();
    let _ = next_binary(&mut ws).await;
    drop(ws);
    let mut back = server.bin(&format!("?resume={token}")).await;
    let again = next_of(&mut back, "welcome").await;
    assert_eq!(again["id"], welcome["id"]);
    assert_eq!(again["resumed"], true);
    // A full snapshot first (base 0), with the player's own exact position.
    let first = next_binary(&mut back).await;
    let header =
        playfield::protocol::bin::read_header(&mut playfield::protocol::bin::Reader::new(&first))
            .unwrap();
    assert_eq!(
        header.base, 0,
        "a resumed connection starts from a full snapshot"
    );
    assert!(header.own.is_some());
}

#[tokio::test]
async fn after_the_grace_period_the_player_is_gone_and_the_token_expired() {
    let server = TestServer::with(|c| c.resume_grace = Duration::from_millis(300)).await;
    let (mut watcher, ws, id, token) = watched_player(&server).await;
    drop(ws);
    wait_for(&mut watcher, "snapshot", |s| player(s, &id).is_none()).await;
    let mut late = server.native(&format!("?resume={token}")).await;
    let (code, close, reason) = refused(&mut late).await;
    assert_eq!((code.as_str(), close), ("resume_expired", 4001), "{reason}");
    assert!(
        reason.contains("0.3 s"),
        "says how long players are kept: {reason}"
    );
}

#[tokio::test]
async fn a_live_player_is_taken_over_and_its_old_connection_told() {
    let server = TestServer::start().await;
    let mut old = server.native("").await;
    let welcome = next_of(&mut old, "welcome").await;
    let token = welcome["resume_token"].as_str().unwrap().to_owned();
    // The client believes its connection is dead; the server does not know yet.
    let mut new = server.native(&format!("?resume={token}")).await;
    let again = next_of(&mut new, "welcome").await;
    assert_eq!(again["id"], welcome["id"]);
    let close = expect_close(&mut old).await;
    assert_eq!(u16::from(close.code), 4002);
    assert!(close.reason.contains("resumed on another connection"));
    let s = next_of(&mut new, "snapshot").await;
    assert!(player(&s, &welcome["id"]).is_some());
    let (_, _, body) = http_get(&server.http("/rooms")).await;
    let rooms: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rooms["players"], 1, "one player, not two: {rooms}");
}

#[tokio::test]
async fn a_player_who_leaves_with_1000_is_removed_at_once() {
    let server = TestServer::start().await;
    let (mut watcher, mut ws, id, token) = watched_player(&server).await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    wait_for(&mut watcher, "snapshot", |s| player(s, &id).is_none()).await;
    let mut back = server.native(&format!("?resume={token}")).await;
    let (code, close, reason) = refused(&mut back).await;
    assert_eq!((code.as_str(), close), ("resume_expired", 4001), "{reason}");
    assert!(reason.contains("left"), "{reason}");
}

#[tokio::test]
async fn wrong_tokens_rooms_and_protocols_are_refused_specifically() {
    let server = TestServer::start().await;
    let mut ws = server.native("?room=a").await;
    let welcome = next_of(&mut ws, "welcome").await;
    let token = welcome["resume_token"].as_str().unwrap().to_owned();
    drop(ws);
    for (query, want) in [
        ("?resume=nonsense".to_owned(), "resume_invalid"),
        (format!("?resume={}", "0".repeat(32)), "resume_invalid"),
        (format!("?room=b&resume={token}"), "resume_wrong_room"),
    ] {
        let mut c = server.native(&query).await;
        let (code, close, reason) = refused(&mut c).await;
        assert_eq!((code.as_str(), close), (want, 4001), "{query}: {reason}");
        assert!(
            reason.contains("without ?resume=") || reason.contains("?room=a"),
            "{reason}"
        );
    }
    // The seed protocol has no token to resume with.
    let mut seed = server.seed_in(&format!("a&resume={token}")).await;
    let (code, close, reason) = refused(&mut seed).await;
    assert_eq!(
        (code.as_str(), close),
        ("unsupported_protocol", 4001),
        "{reason}"
    );
    // None of that used the token up.
    let mut back = server.native(&format!("?room=a&resume={token}")).await;
    let again = next_of(&mut back, "welcome").await;
    assert_eq!(again["id"], welcome["id"]);
    // Seed clients get no token and leave at once when they drop.
    let mut seed = server.seed().await;
    let init = next_of(&mut seed, "init").await;
    assert!(init.get("resume_token").is_none());
}

/// A resumed connection that drops before its client said anything may
/// never have delivered the welcome with the new token (the client gave up
/// on a slow server, say): the token it resumed with works once more.
#[tokio::test]
async fn an_unheard_resume_leaves_the_old_token_working() {
    let server = TestServer::start().await;
    let mut ws = server.native("").await;
    let welcome = next_of(&mut ws, "welcome").await;
    let token = welcome["resume_token"].as_str().unwrap().to_owned();
    drop(ws);
    // Resumed, then gone at once: no message, no pong.
    let lost = server.native(&format!("?resume={token}")).await;
    drop(lost);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut back = server.native(&format!("?resume={token}")).await;
    let again = next_of(&mut back, "welcome").await;
    assert_eq!(again["id"], welcome["id"], "the same player, not a ghost");
    assert_eq!(again["resumed"], true);
    let (_, _, body) = http_get(&server.http("/rooms")).await;
    let rooms: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rooms["players"], 1, "{rooms}");
}
