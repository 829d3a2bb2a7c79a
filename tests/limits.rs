//! Limits against abuse, against a real server: a client's message rate, a
//! flood from a client that never reads, and WebSocket protocol violations.
//! None of it may slow down anybody else.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// A bystander's updates keep coming at the tick rate for `for_at_least`.
/// The bound on gaps is generous (a tick is 50 ms); a session that held up
/// the room would stall it for seconds.
async fn keeps_getting_updates(ws: &mut Ws, for_at_least: Duration) {
    let start = Instant::now();
    let mut last = Instant::now();
    let mut updates = 0;
    while start.elapsed() < for_at_least {
        next_of(ws, "state_update").await;
        let gap = last.elapsed();
        assert!(gap < Duration::from_secs(1), "update gap {gap:?}");
        last = Instant::now();
        updates += 1;
    }
    let per_sec = f64::from(updates) / start.elapsed().as_secs_f64();
    assert!(per_sec > 10.0, "{per_sec:.1} updates/s at 20 Hz");
}

// --- A WebSocket client made of raw bytes, to send what libraries won't. ---

/// Opens a WebSocket by hand. Returns the stream and any bytes read past
/// the response headers.
async fn raw_ws(
    server: &TestServer,
    path: &str,
    subprotocol: Option<&str>,
) -> (TcpStream, Vec<u8>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small receive buffer: a client that never reads fills it quickly.
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    raw_handshake(tcp, &server.addr.to_string(), path, subprotocol).await
}

/// One frame as a client writes it: FIN bit, opcode, and the payload masked
/// with `mask` (or sent unmasked, which clients must not do).
fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    client_frame((u8::from(fin) << 7) | opcode, payload, mask)
}

/// A server frame: opcode and payload.
async fn read_frame(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    loop {
        if let Some((len, op, payload)) = parse_frame(buf) {
            buf.drain(..len);
            return Some((op, payload));
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(WAIT, tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return None, // closed, or reset
            Err(_) => panic!("timed out waiting for a frame"),
        }
    }
}

/// Reads frames until the server's close; its code and reason. `None` if
/// the connection ended without one.
async fn read_close(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, String)> {
    while let Some((op, payload)) = read_frame(tcp, buf).await {
        if op == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return Some((code, String::from_utf8_lossy(&payload[2..]).to_string()));
        }
    }
    None
}

/// The next text frame, as JSON.
async fn read_json(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Value {
    loop {
        let (op, payload) = read_frame(tcp, buf).await.expect("connection ended");
        if op == 0x1 {
            return serde_json::from_slice(&payload).unwrap();
        }
    }
}

/// Frames that break RFC 6455, sent after a real handshake, close the
/// connection with 1002 and a reason (before, the socket was dropped
/// without a close frame). Nobody else notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_close_1002() {
    let server = TestServer::start().await;
    let mut bystander = server.seed().await;
    let _ = next_of(&mut bystander, "init").await;
    let ping = br#"{"type":"ping","id":1}"#;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("unmasked frame", frame(true, 0x1, ping, None), "unmasked"),
        (
            "reserved data opcode",
            frame(true, 0x3, b"x", MASK),
            "reserved opcode 0x3",
        ),
        (
            "reserved control opcode",
            frame(true, 0xB, b"", MASK),
            "reserved opcode 0xb",
        ),
        (
            "fragmented ping",
            frame(false, 0x9, b"hi", MASK),
            "fragmented control frame",
        ),
        (
            "fragmented close",
            frame(false, 0x8, &[0x03, 0xe8], MASK),
            "fragmented control frame",
        ),
    ];
    for (what, bad, expect) in cases {
        let (mut tcp, mut buf) = raw_ws(&server, "/ws", Some("playfield.v1.json")).await;
        assert_eq!(
            read_json(&mut tcp, &mut buf).await["type"],
            "welcome",
            "{what}"
        );
        // A well-formed message first: the session is live and answering.
        tcp.write_all(&frame(true, 0x1, ping, MASK)).await.unwrap();
        loop {
            if read_json(&mut tcp, &mut buf).await["type"] == "pong" {
                break;
            }
        }
        tcp.write_all(&bad).await.unwrap();
        let (code, reason) = read_close(&mut tcp, &mut buf)
            .await
            .unwrap_or_else(|| panic!("{what}: no close frame"));
        assert_eq!(code, 1002, "{what}: {reason}");
        assert!(
            reason.starts_with("WebSocket protocol violation") && reason.contains(expect),
            "{what}: {reason}"
        );
    }
    keeps_getting_updates(&mut bystander, Duration::from_millis(500)).await;
}

/// A client that floods valid messages as fast as TCP takes them and never
/// reads (so never answers a ping) is dropped by the idle timeout, with the
/// rate limit out of the way: its room checks its pings and deadlines every
/// tick however much it sends. Everyone else keeps their tick rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_valid_inputs_without_reading_is_dropped() {
    let server = TestServer::with(|c| {
        c.ping_interval = Duration::from_millis(250);
        c.idle_timeout = Duration::from_millis(1500);
        // Only the idle timeout (or the send timeout) may drop it here.
        c.max_messages_per_sec = Some(1_000_000);
        c.message_burst = 1_000_000;
    })
    .await;
    let mut watcher = server.seed().await;
    let _ = next_of(&mut watcher, "init").await;

    let (mut tcp, _) = raw_ws(&server, "/", None).await;
    // Valid seed moves, which cause no writes; thousands per write.
    let mut batch = Vec::new();
    for i in 0..4000 {
        let dir = ["UP", "DOWN", "LEFT", "RIGHT"][i % 4];
        let text = format!(r#"{{"type":"move","direction":"{dir}"}}"#);
        batch.extend(frame(true, 0x1, text.as_bytes(), MASK));
    }
    let start = Instant::now();
    let flood = tokio::spawn(async move {
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_secs(30) {
            if tcp.write_all(&batch).await.is_err() {
                break; // the server hung up
            }
            sent += 4000;
        }
        (tcp, sent)
    });

    // The flooder shows up, then goes; the watcher's updates never stall.
    let mut seen = false;
    let gone = loop {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the flooding client was never dropped"
        );
        let u = next_of(&mut watcher, "state_update").await;
        let n = u["players"].as_array().unwrap().len();
        seen |= n == 2;
        if seen && n == 1 {
            break start.elapsed();
        }
    };
    assert!(
        gone >= Duration::from_millis(1000),
        "dropped before the idle timeout: {gone:?}"
    );
    keeps_getting_updates(&mut watcher, Duration::from_millis(500)).await;
    let (mut tcp, sent) = flood.await.unwrap();
    assert!(
        sent >= 40_000,
        "the flood was not much of a flood: {sent} messages"
    );
    // Its backlog ends in our close frame, unless the kernel reset the
    // connection because the client kept sending after the server hung up.
    let mut buf = Vec::new();
    if let Some((code, reason)) = read_close(&mut tcp, &mut buf).await {
        assert_eq!(code, 1001, "{reason}");
        assert!(reason.contains("idle timeout"), "{reason}");
    }
}

/// A client that sends far over the message rate gets an `error`
/// (`rate_limited`), has the excess dropped, and is closed with 1008 and a
/// reason within 10 s. Other players keep their tick rate throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sustained_flood_is_closed_1008() {
    let server = TestServer::start().await; // the default limits
    let mut bystander = server.seed().await;
    let _ = next_of(&mut bystander, "init").await;
    let ws = server.native("?room=flood").await;
    let (mut tx, mut rx) = ws.split();
    let start = Instant::now();
    let flood = tokio::spawn(async move {
        let mut seq = 0u32;
        loop {
            seq += 1;
            let input = json!({"type":"input","seq":seq,"input":{"x":1,"y":0}});
            if tx.send(Message::text(input.to_string())).await.is_err() {
                return seq;
            }
            if seq.is_multiple_of(50) {
                tokio::task::yield_now().await;
            }
        }
    });
    let watch = tokio::spawn(async move {
        keeps_getting_updates(&mut bystander, Duration::from_secs(6)).await;
    });
    let mut errors = Vec::new();
    let mut acks = Vec::new();
    let close = loop {
        let msg = tokio::time::timeout(Duration::from_secs(12), rx.next())
            .await
            .expect("still open 12 s into the flood")
            .expect("ended without a close frame")
            .expect("socket error before the close");
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                match v["type"].as_str() {
                    Some("error") => errors.push((start.elapsed(), v)),
                    Some("snapshot") => acks.push(v["ack"].as_u64().unwrap()),
                    _ => {}
                }
            }
            Message::Close(Some(frame)) => break (start.elapsed(), frame),
            _ => {}
        }
    };
    let (closed_after, frame) = close;
    assert_eq!(u16::from(frame.code), 1008, "{}", frame.reason);
    assert!(frame.reason.contains("rate limit"), "{}", frame.reason);
    assert!(
        closed_after < Duration::from_secs(10),
        "closed after {closed_after:?}"
    );
    // Told once when the dropping started, and once more with the close.
    assert_eq!(errors.len(), 2, "{errors:?}");
    for (_, e) in &errors {
        assert_eq!(e["code"], "rate_limited", "{e}");
    }
    let message = errors[0].1["message"].as_str().unwrap();
    assert!(message.contains("at most 60 per second"), "{message}");
    assert!(
        errors[0].0 < Duration::from_secs(3),
        "first error at {:?}",
        errors[0].0
    );
    let sent = flood.await.unwrap();
    assert!(sent > 2000, "only {sent} messages sent");
    // The inputs that did get through carry ever larger seqs (the ones in
    // between were dropped unread): no `invalid_message` for the jumps,
    // and the acks follow.
    assert!(acks.windows(2).all(|w| w[0] <= w[1]), "acks went backwards");
    assert!(acks.last().copied().unwrap_or(0) > 1000);
    watch.await.unwrap();
}

/// With the default limits, a player holding a key (a move every 30 ms,
/// like a 33/s key repeat) after a burst of 60 messages loses nothing and
/// is never told off or closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_repeat_and_bursts_are_never_limited() {
    let server = TestServer::start().await;
    let mut ws = server.native("").await;
    let _ = next_of(&mut ws, "welcome").await;
    let (mut tx, mut rx) = ws.split();
    let reader = tokio::spawn(async move {
        let mut errors = Vec::new();
        let mut last_ack = 0;
        while let Some(Ok(msg)) = rx.next().await {
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    match v["type"].as_str() {
                        Some("error") => errors.push(v),
                        Some("snapshot") => last_ack = v["ack"].as_u64().unwrap(),
                        _ => {}
                    }
                }
                Message::Close(frame) => return (errors, last_ack, frame),
                _ => {}
            }
        }
        (errors, last_ack, None)
    });
    let input = |seq: u32| {
        Message::text(json!({"type":"input","seq":seq,"input":{"x":0,"y":0}}).to_string())
    };
    // A burst of 60 at once (a tab waking up).
    let mut seq = 0;
    for _ in 0..60 {
        seq += 1;
        tx.send(input(seq)).await.unwrap();
    }
    // Then 33 a second for 8 s, pinging now and then like the browser client.
    let mut pace = tokio::time::interval(Duration::from_millis(30));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        pace.tick().await;
        seq += 1;
        tx.send(input(seq)).await.unwrap();
        if seq.is_multiple_of(50) {
            tx.send(Message::text(json!({"type":"ping","id":seq}).to_string()))
                .await
                .unwrap();
        }
    }
    // Every input was taken (applied, or dropped by the input queue, which
    // is acknowledged too): the last ack reaches the last seq.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.send(Message::Close(None)).await.unwrap();
    let (errors, last_ack, close) = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(last_ack, u64::from(seq), "inputs went missing");
    if let Some(frame) = close {
        assert_ne!(u16::from(frame.code), 1008, "{}", frame.reason);
    }
}

/// The room reads at most `--message-burst` messages of a client per tick;
/// the rest wait in the network buffers for the next ticks. 50 pings sent at
/// once with a burst of 10 (and a rate that refills the bucket within a
/// tick, so none is dropped) are answered over at least five ticks, all of
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_at_most_the_burst_per_tick() {
    let server = TestServer::with(|c| {
        c.max_messages_per_sec = Some(1_000_000);
        c.message_burst = 10;
    })
    .await;
    let mut ws = server.native("").await;
    let _ = next_of(&mut ws, "welcome").await;
    let pings: Vec<u8> = (0..50)
        .flat_map(|id| {
            client_frame(
                0x81,
                json!({"type":"ping","id":id}).to_string().as_bytes(),
                MASK,
            )
        })
        .collect();
    // All 50 in one write, so they reach the server together.
    ws.get_mut().write_all(&pings).await.unwrap();
    let mut first = None;
    let mut ids = Vec::new();
    while ids.len() < 50 {
        let pong = next_of(&mut ws, "pong").await;
        first.get_or_insert_with(Instant::now);
        ids.push(pong["id"].as_u64().unwrap());
    }
    let span = first.unwrap().elapsed();
    assert_eq!(
        ids,
        (0..50).collect::<Vec<_>>(),
        "every ping answered, in order"
    );
    // Five ticks of 10: the last pong at least four tick intervals (200 ms)
    // after the first; some slack for timer jitter.
    assert!(
        span >= Duration::from_millis(150),
        "50 pings answered within {span:?}"
    );
}
