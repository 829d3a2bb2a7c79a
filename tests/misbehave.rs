//! Clients that misbehave get a specific error, and nobody else notices.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// A bystander in the default room that must keep getting a `state_update`
/// every tick and keep moving while others misbehave.
struct Bystander {
    ws: Ws,
    id: Value,
}

impl Bystander {
    async fn join(server: &TestServer) -> Self {
        let mut ws = server.seed().await;
        let id = next_of(&mut ws, "init").await["id"].clone();
        Bystander { ws, id }
    }

    /// Updates keep coming at the tick rate and a move still works.
    async fn unaffected(&mut self) {
        let start = Instant::now();
        let first = next_of(&mut self.ws, "state_update").await;
        let (x, y) = find(&first["players"], &self.id).unwrap();
        let mut gaps = Vec::new();
        let mut last = Instant::now();
        for _ in 0..6 {
            next_of(&mut self.ws, "state_update").await;
            gaps.push(last.elapsed());
            last = Instant::now();
        }
        // 20 updates a second; a generous bound for a noisy shared machine.
        let worst = gaps.iter().max().unwrap();
        assert!(*worst < Duration::from_millis(750), "update gap {worst:?}");
        let dir = if y < 250.0 { "DOWN" } else { "UP" };
        send_json(&mut self.ws, json!({"type":"move","direction":dir})).await;
        let id = self.id.clone();
        wait_for(&mut self.ws, "state_update", |u| {
            find(&u["players"], &id).map(|p| p.1) != Some(y)
        })
        .await;
        assert!(start.elapsed() < WAIT);
        let _ = x;
    }
}

async fn error_for(ws: &mut Ws, text: &str) -> Value {
    send_text(ws, text).await;
    next_of(ws, "error").await
}

/// Invalid JSON, unknown types and wrong field types each get their own
/// error; the connection stays usable and others notice nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_specific_errors() {
    let server = TestServer::start().await;
    let mut bystander = Bystander::join(&server).await;
    let mut bad = server.native("").await;
    let id = next_of(&mut bad, "welcome").await["id"].clone();

    let e = error_for(&mut bad, "{\"type\": \"input\", ").await;
    assert_eq!(e["code"], "invalid_json");
    assert!(e["message"].as_str().unwrap().contains("not valid JSON"));

    let e = error_for(&mut bad, r#"{"type":"fly","speed":9000}"#).await;
    assert_eq!(e["code"], "unknown_type");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("`fly`") && msg.contains("`input`") && msg.contains("`ping`"),
        "{msg}"
    );

    let e = error_for(
        &mut bad,
        r#"{"type":"input","seq":-1,"input":{"x":1,"y":0}}"#,
    )
    .await;
    assert_eq!(e["code"], "invalid_message");
    let e = error_for(
        &mut bad,
        r#"{"type":"input","seq":1,"input":{"x":"left","y":0}}"#,
    )
    .await;
    assert_eq!(e["code"], "invalid_message");
    assert!(e["message"].as_str().unwrap().contains("input"));
    let e = error_for(&mut bad, "17").await;
    assert_eq!(e["code"], "invalid_message");

    // A seed client gets the same treatment in its own protocol.
    let mut seed = server.seed().await;
    let _ = next_of(&mut seed, "init").await;
    let e = error_for(&mut seed, r#"{"type":"move","direction":"NORTH"}"#).await;
    assert_eq!(e["code"], "invalid_message");
    assert!(e["message"].as_str().unwrap().contains("UP"));
    let e = error_for(&mut seed, "not json at all").await;
    assert_eq!(e["code"], "invalid_json");

    // Still connected and playing after all that.
    send_json(
        &mut bad,
        json!({"type":"input","seq":1,"input":{"x":0,"y":1}}),
    )
    .await;
    wait_for(&mut bad, "snapshot", |s| s["ack"] == 1).await;
    let s = next_of(&mut bad, "snapshot").await;
    assert!(find(players(&s), &id).is_some());
    bystander.unaffected().await;
}

/// Oversized messages close with 1009 and say what the limit is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_closes_1009() {
    let server = TestServer::with(|c| c.max_message_bytes = 256).await;
    let mut bystander = Bystander::join(&server).await;
    let mut ws = server.native("").await;
    let _ = next_of(&mut ws, "welcome").await;
    // Just under the limit is fine.
    let pad = "x".repeat(150);
    let e = error_for(&mut ws, &format!(r#"{{"type":"{pad}"}}"#)).await;
    assert_eq!(e["code"], "unknown_type");
    ws.send(Message::text("y".repeat(300))).await.unwrap();
    let close = expect_close(&mut ws).await;
    assert_eq!(u16::from(close.code), 1009);
    assert!(close.reason.contains("256 bytes"), "{}", close.reason);
    bystander.unaffected().await;
}

/// Binary frames on a text protocol close with 1003.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frame_closes_1003() {
    let server = TestServer::start().await;
    let mut bystander = Bystander::join(&server).await;
    let mut ws = server.seed().await;
    let _ = next_of(&mut ws, "init").await;
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let close = expect_close(&mut ws).await;
    assert_eq!(u16::from(close.code), 1003);
    assert!(close.reason.contains("JSON text"), "{}", close.reason);
    bystander.unaffected().await;
}

/// A text frame that is not UTF-8 closes with 1007.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_closes_1007() {
    let server = TestServer::start().await;
    let mut bystander = Bystander::join(&server).await;
    let mut ws = server.native("").await;
    let _ = next_of(&mut ws, "welcome").await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    let close = expect_close(&mut ws).await;
    assert_eq!(u16::from(close.code), 1007);
    bystander.unaffected().await;
}

/// Invalid room names close with 1008 and say what is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_room_closes_1008() {
    let server = TestServer::start().await;
    let mut bystander = Bystander::join(&server).await;
    for room in ["", "has%20space", &"r".repeat(33), "semi;colon", "a&room=b"] {
        let mut ws = server.native(&format!("?room={room}")).await;
        let e = next_of(&mut ws, "error").await;
        assert_eq!(e["code"], "invalid_room");
        let close = expect_close(&mut ws).await;
        assert_eq!(u16::from(close.code), 1008, "room {room:?}");
        assert!(close.reason.contains("room"), "{}", close.reason);
    }
    bystander.unaffected().await;
}

/// A full room refuses with 1013 and a clear message; others can still join
/// other rooms, and a seat frees up when someone leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_room_refuses_1013() {
    let server = TestServer::with(|c| c.room_capacity = 2).await;
    let mut a = server.native("?room=small").await;
    let _ = next_of(&mut a, "welcome").await;
    let mut b = server.seed_in("small").await;
    let _ = next_of(&mut b, "init").await;
    let mut c = server.native("?room=small").await;
    let e = next_of(&mut c, "error").await;
    assert_eq!(e["code"], "room_full");
    assert!(e["message"].as_str().unwrap().contains("2 players max"));
    let close = expect_close(&mut c).await;
    assert_eq!(u16::from(close.code), 1013);
    assert!(close.reason.contains("`small` is full"), "{}", close.reason);

    let mut other = server.native("?room=other").await;
    assert_eq!(next_json(&mut other).await["type"], "welcome");

    drop(b);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut d = server.native("?room=small").await;
        if next_json(&mut d).await["type"] == "welcome" {
            break;
        }
        assert!(Instant::now() < deadline, "seat never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The room limit refuses a new room with 1013; existing rooms stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_limit_refuses_1013() {
    let server = TestServer::with(|c| c.max_rooms = 1).await;
    let mut a = server.native("?room=one").await;
    let _ = next_of(&mut a, "welcome").await;
    let mut b = server.native("?room=two").await;
    let e = next_of(&mut b, "error").await;
    assert_eq!(e["code"], "too_many_rooms");
    let close = expect_close(&mut b).await;
    assert_eq!(u16::from(close.code), 1013);
    assert!(
        close.reason.contains("limit of 1 rooms"),
        "{}",
        close.reason
    );
    let mut c = server.seed_in("one").await;
    assert_eq!(next_json(&mut c).await["type"], "init");
}

/// The connection limit refuses extra clients with 1013.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_1013() {
    let server = TestServer::with(|c| c.max_connections = 2).await;
    let mut a = server.seed().await;
    let _ = next_of(&mut a, "init").await;
    let mut b = server.native("?room=x").await;
    let _ = next_of(&mut b, "welcome").await;
    let mut c = server.seed().await;
    let e = next_of(&mut c, "error").await;
    assert_eq!(e["code"], "server_full");
    let close = expect_close(&mut c).await;
    assert_eq!(u16::from(close.code), 1013);
    assert!(
        close.reason.contains("2 connections max"),
        "{}",
        close.reason
    );
    // The first two play on.
    next_of(&mut a, "state_update").await;
    next_of(&mut b, "snapshot").await;
}

/// Asking only for subprotocols we do not speak is refused before the upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_subprotocol_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Error;
    let server = TestServer::start().await;
    let mut req = server.url("/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "mqtt, playfield.v9.json".parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Err(Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
            let body = String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap();
            assert!(
                body.contains("`mqtt`") && body.contains("playfield.v1.json"),
                "{body}"
            );
        }
        other => panic!("expected HTTP 400, got {other:?}"),
    }
}

/// A client that stops reading (and so stops answering pings) neither delays
/// anybody's updates nor stays: it is dropped after the idle timeout and its
/// dot disappears. A client that reads stays past the same timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_client_is_dropped_without_delaying_others() {
    let server = TestServer::with(|c| {
        c.ping_interval = Duration::from_millis(250);
        c.idle_timeout = Duration::from_millis(2500);
        // Dropped for not answering pings, the player is kept for a resume
        // this long, then removed.
        c.resume_grace = Duration::from_millis(1000);
    })
    .await;
    let mut watcher = server.seed().await;
    let _ = next_of(&mut watcher, "init").await;
    let mut stuck = server.native("").await;
    let stuck_id = next_of(&mut stuck, "welcome").await["id"].clone();
    let stuck_as_seed = Value::String(stuck_id.to_string());
    // From here on `stuck` is never read again, but it keeps sending.
    let start = Instant::now();
    wait_for(&mut watcher, "state_update", |u| {
        find(&u["players"], &stuck_as_seed).is_some()
    })
    .await;
    let mut last = Instant::now();
    let mut worst = Duration::ZERO;
    let mut gone_after = None;
    let mut seq = 0;
    while start.elapsed() < Duration::from_secs(8) {
        seq += 1;
        let _ = stuck
            .send(Message::text(
                json!({"type":"input","seq":seq,"input":{"x":0,"y":0}}).to_string(),
            ))
            .await;
        let u = next_of(&mut watcher, "state_update").await;
        worst = worst.max(last.elapsed());
        last = Instant::now();
        if find(&u["players"], &stuck_as_seed).is_none() {
            gone_after = Some(start.elapsed());
            break;
        }
    }
    // A tick is 50 ms. The bound is generous for a loaded machine; a room
    // that waited for the stuck client would stall for the whole idle
    // timeout (2.5 s).
    assert!(
        worst < Duration::from_secs(1),
        "watcher's updates stalled {worst:?}"
    );
    let gone_after = gone_after.expect("non-reading client was never dropped");
    assert!(
        gone_after >= Duration::from_millis(1000),
        "dropped too early: {gone_after:?}"
    );
    // The watcher, which reads (and so answers pings), is still here.
    let u = next_of(&mut watcher, "state_update").await;
    assert_eq!(u["players"].as_array().unwrap().len(), 1);
    // The stuck client's connection is over: its backlog ends in our close
    // frame, unless the kernel reset the socket because it kept sending
    // after the server hung up (then the backlog is discarded).
    loop {
        match tokio::time::timeout(WAIT, stuck.next())
            .await
            .expect("still open")
        {
            Some(Ok(Message::Close(Some(close)))) => {
                assert_eq!(u16::from(close.code), 1001);
                assert!(close.reason.contains("idle timeout"), "{}", close.reason);
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        }
    }
}

/// Shutdown closes every client with 1001 and a reason, and the server exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_clients_1001() {
    // A long grace: the server must exit as soon as its clients have
    // closed, not when the grace runs out.
    let mut server = TestServer::with(|c| c.shutdown_grace = Duration::from_secs(60)).await;
    let mut a = server.seed().await;
    let _ = next_of(&mut a, "init").await;
    let mut b = server.native("?room=other").await;
    let _ = next_of(&mut b, "welcome").await;
    let start = Instant::now();
    server.shutdown();
    for ws in [&mut a, &mut b] {
        let close = expect_close(ws).await;
        assert_eq!(u16::from(close.code), 1001);
        assert!(close.reason.contains("shutting down"));
    }
    let result = tokio::time::timeout(Duration::from_secs(20), &mut server.task)
        .await
        .expect("server did not exit")
        .unwrap();
    assert!(result.is_ok());
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "waited for the grace period"
    );
    // And it no longer accepts connections.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

/// A client whose TCP window stays shut (it sends but never reads, so the
/// server's replies pile up) is dropped after `send_timeout`, even though the
/// idle timeout is far away, and the room never waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_is_dropped_after_send_timeout() {
    let server = TestServer::with(|c| {
        c.send_timeout = Duration::from_secs(2);
        c.idle_timeout = Duration::from_secs(60);
        // Dropped, the player is held this long for a resume, then removed.
        c.resume_grace = Duration::from_millis(500);
        // Every ping must earn its pong, so the replies pile up: the rate
        // limit (which would drop most pings) is out of the way.
        c.max_messages_per_sec = Some(1_000_000);
        c.message_burst = 1_000_000;
    })
    .await;
    let mut watcher = server.seed().await;
    let _ = next_of(&mut watcher, "init").await;

    // A small receive buffer so the backlog builds up quickly.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        server.url("/ws"),
    )
    .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "playfield.v1.json".parse().unwrap(),
    );
    let (mut stuck, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();

    // Make the server answer: each ping earns a pong it has to write to us.
    let flood = tokio::spawn(async move {
        for id in 0..200_000u32 {
            let ping = Message::text(format!(r#"{{"type":"ping","id":{id}}}"#));
            match tokio::time::timeout(Duration::from_secs(3), stuck.send(ping)).await {
                Ok(Ok(())) => {}
                _ => break, // the server stopped reading us, or hung up
            }
        }
        stuck
    });

    // Meanwhile the watcher's updates keep coming, and the stuck player goes.
    let start = Instant::now();
    let mut last = Instant::now();
    let mut worst = Duration::ZERO;
    let mut seen_two = false;
    let gone = loop {
        // Generous: the server's socket buffer (up to several MB of pongs)
        // must fill first, which takes a while on a loaded machine; the loop
        // ends as soon as the client is dropped.
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "stuck client never dropped"
        );
        let u = next_of(&mut watcher, "state_update").await;
        worst = worst.max(last.elapsed());
        last = Instant::now();
        let n = u["players"].as_array().unwrap().len();
        seen_two |= n == 2;
        if seen_two && n == 1 {
            break start.elapsed();
        }
    };
    // Generous for a loaded machine; a room that waited for the stuck
    // client would stall for the whole send timeout (2 s).
    assert!(
        worst < Duration::from_secs(1),
        "watcher's updates stalled {worst:?}"
    );
    assert!(gone < Duration::from_secs(60));
    let _ = flood.await;
}

/// Shutdown is bounded by `shutdown_grace` even when clients stall it: a
/// half-sent HTTP request and a WebSocket client that never answers the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_by_the_grace_period() {
    use tokio::io::AsyncWriteExt;
    let mut server = TestServer::with(|c| c.shutdown_grace = Duration::from_secs(1)).await;
    let mut half = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut mute = server.seed().await;
    let _ = next_of(&mut mute, "init").await;
    // From here on `mute` is never read, so it never answers the close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    server.shutdown();
    // Without the bound, the stalled clients would hold shutdown for ever;
    // the upper bound leaves a loaded machine plenty of slack.
    let result = tokio::time::timeout(Duration::from_secs(10), &mut server.task)
        .await
        .expect("shutdown hung past the grace period")
        .unwrap();
    assert!(result.is_ok());
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "took {took:?} with a 1 s grace"
    );
    // Timers never fire early: the grace is waited out in full.
    assert!(
        took >= Duration::from_millis(950),
        "did not wait for the stalled clients: {took:?}"
    );
    drop((half, mute));
}

/// A client that never finishes its request headers is cut off after
/// `header_timeout` (no slowloris holding a connection for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_request_headers_time_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::with(|c| c.header_timeout = Duration::from_secs(1)).await;
    let mut half = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    // The server answers 408 or just closes; either way the read ends.
    // (`Ok` at end of stream, or `Err` if the kernel reset it: both are closed.)
    // Without the timeout the connection would stay open for ever; the
    // bound leaves a loaded machine plenty of slack.
    let _ = tokio::time::timeout(Duration::from_secs(10), half.read_to_end(&mut buf))
        .await
        .expect("connection still open long after the header timeout");
    let took = start.elapsed();
    // (The timer starts at accept, a moment before `start`.)
    assert!(
        took >= Duration::from_millis(500),
        "closed too early: {took:?}"
    );
    // A complete request on a fresh connection is still served.
    let (status, _, _) = http_get(&server.http("/healthz")).await;
    assert_eq!(status, 200);
}

/// Acks never go backwards and never run ahead of the inputs really sent:
/// a seq that jumps absurdly (here 4294967295 while the queue is full,
/// which used to pin the ack there) gets an `invalid_message` error saying
/// what is allowed, and a smaller seq after a larger one (applied all the
/// same) does not take the ack back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_are_monotonic_and_absurd_seqs_refused() {
    let server = TestServer::start().await;
    let mut ws = server.native("").await;
    let _ = next_of(&mut ws, "welcome").await;
    let input = |seq: u64| json!({"type":"input","seq":seq,"input":{"x":0,"y":0}});
    for seq in 1..=4 {
        send_json(&mut ws, input(seq)).await;
    }
    send_json(&mut ws, input(u64::from(u32::MAX))).await;
    let mut acks = Vec::new();
    let deadline = Instant::now() + WAIT;
    let error = loop {
        assert!(
            Instant::now() < deadline,
            "no error for seq 4294967295; acks {acks:?}"
        );
        let v = next_json(&mut ws).await;
        match v["type"].as_str() {
            Some("snapshot") => acks.push(v["ack"].as_u64().unwrap()),
            Some("error") => break v,
            _ => {}
        }
    };
    assert_eq!(error["code"], "invalid_message");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("4294967295") && message.contains("at most 1028"),
        "{message}"
    );
    // Everything queued is acknowledged, and nothing more.
    loop {
        let s = next_of(&mut ws, "snapshot").await;
        acks.push(s["ack"].as_u64().unwrap());
        if acks.last() == Some(&4) {
            break;
        }
        assert!(acks.len() < 100, "{acks:?}");
    }
    send_json(&mut ws, input(6)).await;
    send_json(&mut ws, input(5)).await;
    for _ in 0..6 {
        let s = next_of(&mut ws, "snapshot").await;
        acks.push(s["ack"].as_u64().unwrap());
    }
    assert_eq!(acks.last(), Some(&6), "{acks:?}");
    assert!(
        acks.windows(2).all(|w| w[0] <= w[1]),
        "went backwards: {acks:?}"
    );
}
