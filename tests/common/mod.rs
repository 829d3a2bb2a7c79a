//! A real server on an ephemeral loopback port and real WebSocket clients.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use playfield::dots::DotGame;
use playfield::Config;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::with_game::<DotGame>(tweak).await
    }

    /// A server running any game.
    pub async fn with_game<G: playfield::Game>(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::for_tests();
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(playfield::server::run::<G>(config, listener, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Asks the server to shut down (like SIGTERM).
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// A seed-protocol client (no subprotocol), on `/` like the seed's client.
    pub async fn seed(&self) -> Ws {
        connect(&self.url("/"), None).await
    }

    /// A seed-protocol client in a room.
    pub async fn seed_in(&self, room: &str) -> Ws {
        connect(&self.url(&format!("/?room={room}")), None).await
    }

    /// A native-protocol client.
    pub async fn native(&self, query: &str) -> Ws {
        connect(&self.url(&format!("/ws{query}")), Some("playfield.v1.json")).await
    }

    /// A native-protocol client on the binary encoding.
    pub async fn bin(&self, query: &str) -> Ws {
        connect(&self.url(&format!("/ws{query}")), Some("playfield.v1.bin")).await
    }
}

pub async fn connect(url: &str, subprotocol: Option<&str>) -> Ws {
    let mut req = url.into_client_request().unwrap();
    if let Some(p) = subprotocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    if let Some(p) = subprotocol {
        assert_eq!(
            resp.headers().get("sec-websocket-protocol").unwrap(),
            p,
            "server echoes the subprotocol"
        );
    }
    ws
}

/// The next message that is not a ping or a pong, on any WebSocket stream
/// (plain, TLS, or over HTTP/2).
pub async fn next_message<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> Message {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a message")
            .expect("connection ended")
            .expect("socket error");
        if !matches!(msg, Message::Ping(_) | Message::Pong(_)) {
            return msg;
        }
    }
}

/// The next text message as JSON (pings and pongs are skipped).
pub async fn next_json<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Value {
    match next_message(ws).await {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The next binary message (pings and pongs are skipped).
pub async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    match next_message(ws).await {
        Message::Binary(b) => b.to_vec(),
        other => panic!("expected a binary message, got {other:?}"),
    }
}

/// The field kinds of the `schema` in a `welcome`.
pub fn schema_kinds(welcome: &Value) -> Vec<playfield::replicate::FieldKind> {
    use playfield::replicate::FieldKind;
    welcome["schema"]["fields"]
        .as_array()
        .expect("welcome.schema.fields")
        .iter()
        .map(|f| match f["kind"].as_str().unwrap() {
            "bool" => FieldKind::Bool,
            "int" => FieldKind::Int,
            "float" => FieldKind::Float,
            "str" => FieldKind::Str,
            k => panic!("unknown kind {k}"),
        })
        .collect()
}

/// The next message whose `type` is `kind`.
pub async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// Waits until a message of `kind` satisfies `pred`.
pub async fn wait_for(ws: &mut Ws, kind: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        let v = next_of(ws, kind).await;
        if pred(&v) {
            return v;
        }
    }
}

/// Reads until the server closes; returns its close frame.
pub async fn expect_close(ws: &mut Ws) -> CloseFrame {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for close");
        match msg {
            Some(Ok(Message::Close(Some(frame)))) => return frame,
            Some(Ok(Message::Close(None))) => panic!("close without a code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error before close: {e}"),
            None => panic!("connection ended without a close frame"),
        }
    }
}

pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

pub async fn send_binary(ws: &mut Ws, bytes: Vec<u8>) {
    ws.send(Message::binary(bytes)).await.unwrap();
}

pub async fn send_text(ws: &mut Ws, s: &str) {
    ws.send(Message::text(s)).await.unwrap();
}

/// `(x, y)` of player `id` (seed string or native number) in a state list.
pub fn find(players: &Value, id: &Value) -> Option<(f64, f64)> {
    players
        .as_array()?
        .iter()
        .find(|p| &p["id"] == id)
        .map(|p| (p["x"].as_f64().unwrap(), p["y"].as_f64().unwrap()))
}

/// The players array of a seed `state_update` or a native `snapshot`.
pub fn players(msg: &Value) -> &Value {
    if msg["type"] == "snapshot" {
        &msg["state"]["players"]
    } else {
        &msg["players"]
    }
}

/// Plain HTTP GET: `(status, body)`.
pub async fn http_get(url: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// Leaves for good: a close frame with 1000, which tells the server not to
/// keep the player for a resume. (Dropping a native client's socket instead
/// keeps its player for `--resume-grace`.)
pub async fn leave(mut ws: Ws) {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    let _ = ws.close(Some(bye)).await;
    let _ = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

/// One WebSocket frame as a client writes it, for tests that break the
/// rules on a raw socket: the first byte (FIN, RSV bits, opcode) and the
/// payload, masked with `mask` (or unmasked, which clients must not do).
pub fn client_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![b0];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masking key for [`client_frame`].
pub const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

/// `(bytes used, opcode, payload)` of a whole unmasked (server) frame at the
/// start of `b`, if it is all there.
pub fn parse_frame(b: &[u8]) -> Option<(usize, u8, Vec<u8>)> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    let (len, at) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = b.get(at..at + len)?.to_vec();
    Some((at + len, b0 & 0x0f, payload))
}

/// Opens a WebSocket by hand on `tcp` (a raw connection to `host`), for
/// tests that send what libraries won't. Returns the stream and any bytes
/// read past the `101` response's headers.
pub async fn raw_handshake(
    mut tcp: TcpStream,
    host: &str,
    path: &str,
    subprotocol: Option<&str>,
) -> (TcpStream, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proto = subprotocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{proto}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk))
            .await
            .expect("no handshake response")
            .unwrap();
        assert!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let rest = buf.split_off(end);
    (tcp, rest)
}
