//! The HTTP front against a real server on loopback: security headers,
//! compression and revalidation of the client's files, connection limits
//! (total, per address, refusals), the `Origin` allow-list, `/readyz`
//! while draining, timeouts on HTTP/1.1 and HTTP/2, and WebSockets over
//! HTTP/2.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use playfield::config::{AllowedOrigins, IpNets};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// A response with its whole body.
struct Reply {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 GET on a fresh connection, with extra request headers.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut send, conn) = http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    tokio::time::timeout(WAIT, async {
        let resp = send.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
    .expect("no response in time")
}

/// Reads a raw connection to its end (or a reset); what arrived.
async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("connection still open");
    buf
}

/// The close frame that ends `ws`.
async fn close_of<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> (u16, String) {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for close")
        {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Close(None))) => panic!("close without a code"),
            Some(Ok(_)) => continue,
            other => panic!("ended without a close frame: {other:?}"),
        }
    }
}

/// The first message a seed client gets: `init`, or `error` when refused.
async fn seed_outcome(server: &TestServer) -> (Ws, Value) {
    let mut ws = server.seed().await;
    let first = next_json(&mut ws).await;
    (ws, first)
}

/// Retries until a new seed client is admitted (a released place is given
/// back when the server notices the close, not at once).
async fn eventually_admitted(server: &TestServer) -> Ws {
    let deadline = Instant::now() + WAIT;
    loop {
        let (ws, first) = seed_outcome(server).await;
        if first["type"] == "init" {
            return ws;
        }
        assert!(Instant::now() < deadline, "never admitted again: {first}");
        drop(ws);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------
// Security headers, compression, validators

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers() {
    let server = TestServer::start().await;
    let host = server.addr.to_string();
    for path in [
        "/",
        "/js/main.js",
        "/style.css",
        "/healthz",
        "/rooms",
        "/nope",
    ] {
        let r = get(server.addr, path, &[]).await;
        let csp = r
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(csp.starts_with("default-src 'self';"), "{path}: {csp}");
        assert!(
            csp.contains(&format!("connect-src 'self' ws://{host} wss://{host};")),
            "{path}: {csp}"
        );
        for loose in [
            "unsafe-inline",
            "unsafe-eval",
            "*",
            "data:",
            "ws: ",
            "wss: ",
        ] {
            assert!(!csp.contains(loose), "{path}: `{loose}` in {csp}");
        }
        assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
        assert!(csp.contains("object-src 'none'"), "{csp}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
    }
}

/// The policy above only works because the client has no inline script,
/// style or event handler, and evaluates no strings: keep it that way.
#[test]
fn the_client_needs_nothing_the_policy_forbids() {
    let root = env!("CARGO_MANIFEST_DIR");
    let html = std::fs::read_to_string(format!("{root}/client/index.html")).unwrap();
    let lower = html.to_ascii_lowercase();
    for (i, _) in lower.match_indices("<script") {
        let tag = &lower[i..i + lower[i..].find('>').unwrap()];
        assert!(tag.contains(" src="), "inline script in index.html: {tag}");
    }
    assert!(!lower.contains("<style"), "inline <style> in index.html");
    assert!(!lower.contains(" style="), "style attribute in index.html");
    let handler = regex_like_on_attribute(&lower);
    assert!(
        handler.is_none(),
        "inline event handler in index.html: {handler:?}"
    );
    for entry in std::fs::read_dir(format!("{root}/client/js")).unwrap() {
        let path = entry.unwrap().path();
        let js = std::fs::read_to_string(&path).unwrap();
        for banned in [
            "eval(",
            "new Function(",
            "setAttribute('style'",
            "innerHTML",
        ] {
            assert!(!js.contains(banned), "{}: {banned}", path.display());
        }
    }
}

/// ` onclick=`-style attributes (a space, `on`, letters, `=`).
fn regex_like_on_attribute(html: &str) -> Option<String> {
    let bytes = html.as_bytes();
    for (i, _) in html.match_indices(" on") {
        let rest = &bytes[i + 3..];
        let letters = rest.iter().take_while(|b| b.is_ascii_lowercase()).count();
        if letters > 0 && rest.get(letters) == Some(&b'=') {
            return Some(html[i..i + 3 + letters + 1].to_owned());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_assets_are_compressed_when_the_client_accepts_it() {
    let server = TestServer::start().await;
    for path in ["/js/main.js", "/style.css", "/"] {
        let plain = get(server.addr, path, &[]).await;
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("content-encoding"), None, "{path}");
        assert!(
            plain.body.len() > 1000,
            "{path} is small? {}",
            plain.body.len()
        );

        let gz = get(server.addr, path, &[("accept-encoding", "gzip")]).await;
        assert_eq!(gz.status, 200);
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{path}");
        assert!(
            gz.header("vary").unwrap_or("").contains("accept-encoding"),
            "{path}"
        );
        assert!(
            gz.body.len() < plain.body.len(),
            "{path}: gzip did not shrink it"
        );
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gz.body[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain.body, "{path}");

        let br = get(
            server.addr,
            path,
            &[("accept-encoding", "br;q=1, gzip;q=0.5")],
        )
        .await;
        assert_eq!(br.header("content-encoding"), Some("br"), "{path}");
        let mut unbrotli = Vec::new();
        brotli_decompressor::Decompressor::new(&br.body[..], 4096)
            .read_to_end(&mut unbrotli)
            .unwrap();
        assert_eq!(unbrotli, plain.body, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_revalidate_with_an_etag() {
    let server = TestServer::start().await;
    for path in ["/", "/js/main.js", "/style.css"] {
        let first = get(server.addr, path, &[]).await;
        assert_eq!(first.status, 200);
        assert_eq!(first.header("cache-control"), Some("no-cache"), "{path}");
        let etag = first.header("etag").expect("an ETag").to_owned();
        assert!(etag.starts_with("W/\"") && etag.len() > 10, "{etag}");

        let again = get(server.addr, path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        // A compressed copy revalidates with the same (weak) tag.
        let gz = get(
            server.addr,
            path,
            &[("if-none-match", &etag), ("accept-encoding", "gzip")],
        )
        .await;
        assert_eq!(gz.status, 304, "{path}");

        let other = get(server.addr, path, &[("if-none-match", "W/\"stale\"")]).await;
        assert_eq!(other.status, 200, "{path}");
        assert_eq!(other.body, first.body);
    }
    // Different files, different tags.
    let a = get(server.addr, "/style.css", &[]).await;
    let b = get(server.addr, "/js/main.js", &[]).await;
    assert_ne!(a.header("etag"), b.header("etag"));
}

// ---------------------------------------------------------------------------
// Connection limits

/// `--max-connections` counts every TCP connection: two idle ones fill a
/// server of two. A WebSocket over the limit is told why on its socket,
/// plain HTTP gets 503, probes still answer, and the places come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_counts_plain_http_connections() {
    let server = TestServer::with(|c| c.max_connections = 2).await;
    let idle_a = TcpStream::connect(server.addr).await.unwrap();
    let idle_b = TcpStream::connect(server.addr).await.unwrap();

    let (mut ws, first) = seed_outcome(&server).await;
    assert_eq!(first["type"], "error", "{first}");
    assert_eq!(first["code"], "server_full");
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 1013);
    assert!(reason.contains("2 connections max"), "{reason}");

    let r = get(server.addr, "/rooms", &[]).await;
    assert_eq!(r.status, 503);
    assert!(
        r.text().contains("server is full (2 connections max)"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("connection"), Some("close"));
    let r = get(server.addr, "/healthz", &[]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
    let r = get(server.addr, "/readyz", &[]).await;
    assert_eq!(r.status, 200);

    drop((idle_a, idle_b));
    let mut ws = eventually_admitted(&server).await;
    next_of(&mut ws, "state_update").await;
}

/// Past the refusal slots (16 here), a connection gets a canned 503 at
/// once, without sending anything: it never waits in the accept queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_refusal_slots_a_connection_gets_503_at_once() {
    let server = TestServer::with(|c| c.max_connections = 1).await;
    let _holder = TcpStream::connect(server.addr).await.unwrap();
    // Each of these takes a refusal slot (served to be told why, until its
    // header timeout).
    let mut refused = Vec::new();
    for _ in 0..playfield::limits::refusal_slots(1) {
        refused.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut late = TcpStream::connect(server.addr).await.unwrap();
    let answer = String::from_utf8(read_all(&mut late).await).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(
        answer.ends_with("server is full (1 connections max); try again later\n"),
        "{answer}"
    );
}

/// `--max-connections-per-ip`: a third connection from one address is
/// refused with a reason naming the address; closing one lets it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limit() {
    let server = TestServer::with(|c| {
        c.max_connections_per_ip = 2;
        c.per_ip_exempt = IpNets::none();
    })
    .await;
    let (mut a, first) = seed_outcome(&server).await;
    assert_eq!(first["type"], "init");
    let (mut b, first) = seed_outcome(&server).await;
    assert_eq!(first["type"], "init");

    let (mut c, first) = seed_outcome(&server).await;
    assert_eq!(first["type"], "error", "{first}");
    let (code, reason) = close_of(&mut c).await;
    assert_eq!(code, 1013);
    assert_eq!(
        reason,
        "too many connections from 127.0.0.1 (2 max per address); close some and try again"
    );
    assert_eq!(first["message"], reason.as_str());

    let r = get(server.addr, "/rooms", &[]).await;
    assert_eq!(r.status, 503);
    assert!(
        r.text().contains("too many connections from 127.0.0.1"),
        "{}",
        r.text()
    );
    assert_eq!(get(server.addr, "/healthz", &[]).await.status, 200);

    // The two admitted play on; when one leaves, a newcomer gets its place.
    next_of(&mut b, "state_update").await;
    a.close(None).await.unwrap();
    drop(a);
    let mut d = eventually_admitted(&server).await;
    next_of(&mut d, "state_update").await;
}

/// Loopback is exempt by default (a reverse proxy on the same host), and
/// 0 means no per-address limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limit_exemptions() {
    let exempt = TestServer::with(|c| c.max_connections_per_ip = 1).await;
    let unlimited = TestServer::with(|c| {
        c.max_connections_per_ip = 0;
        c.per_ip_exempt = IpNets::none();
    })
    .await;
    for server in [&exempt, &unlimited] {
        let mut held = Vec::new();
        for _ in 0..3 {
            let (ws, first) = seed_outcome(server).await;
            assert_eq!(first["type"], "init", "{first}");
            held.push(ws);
        }
    }
}

// ---------------------------------------------------------------------------
// Origin allow-list

async fn ws_with_origin(server: &TestServer, origin: Option<&str>) -> Result<Ws, (u16, String)> {
    let mut req = server.url("/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "playfield.v1.json".parse().unwrap(),
    );
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => Err((
            resp.status().as_u16(),
            String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap(),
        )),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_allow_list() {
    let server = TestServer::with(|c| {
        c.allowed_origins = AllowedOrigins::parse("https://game.example, null").unwrap();
    })
    .await;
    for allowed in [Some("https://game.example"), Some("null"), None] {
        let mut ws = ws_with_origin(&server, allowed)
            .await
            .unwrap_or_else(|e| panic!("{allowed:?} refused: {e:?}"));
        assert_eq!(next_of(&mut ws, "welcome").await["type"], "welcome");
    }
    for refused in [
        "https://evil.example",
        "https://game.example.evil",
        "http://game.example",
    ] {
        let (status, body) = ws_with_origin(&server, Some(refused))
            .await
            .err()
            .unwrap_or_else(|| panic!("{refused} allowed"));
        assert_eq!(status, 403, "{refused}");
        assert!(body.contains(&format!("origin `{refused}`")), "{body}");
        assert!(body.contains("--allowed-origins"), "{body}");
        assert!(body.contains("PLAYFIELD_ALLOWED_ORIGINS"), "{body}");
    }

    // `null` (a page opened from disk) must be listed to be allowed.
    let strict = TestServer::with(|c| {
        c.allowed_origins = AllowedOrigins::parse("https://game.example").unwrap();
    })
    .await;
    let (status, body) = ws_with_origin(&strict, Some("null")).await.err().unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("`null`"), "{body}");
    assert!(ws_with_origin(&strict, None).await.is_ok());

    // The default allows any origin.
    let open = TestServer::start().await;
    assert!(ws_with_origin(&open, Some("https://anywhere.example"))
        .await
        .is_ok());
    assert!(ws_with_origin(&open, Some("null")).await.is_ok());
}

// ---------------------------------------------------------------------------
// Readiness

/// `/readyz` says 200 while the server takes players and 503 while it
/// drains; `/healthz` stays `ok`, and new players are turned away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_while_draining() {
    let mut server = TestServer::with(|c| c.shutdown_grace = Duration::from_secs(20)).await;
    let r = get(server.addr, "/readyz", &[]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ready"));
    assert_eq!(get(server.addr, "/healthz", &[]).await.text(), "ok");

    // Something for the drain to wait on: a request whose headers never end
    // (it holds the drain until its header timeout).
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut player = server.seed().await;
    next_of(&mut player, "init").await;

    server.shutdown();
    let deadline = Instant::now() + WAIT;
    let draining = loop {
        let r = get(server.addr, "/readyz", &[]).await;
        if r.status == 503 {
            break r;
        }
        assert!(Instant::now() < deadline, "/readyz never went 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(draining.text().contains("draining"), "{}", draining.text());
    assert_eq!(draining.header("connection"), Some("close"));
    let health = get(server.addr, "/healthz", &[]).await;
    assert_eq!(
        (health.status.as_u16(), health.text().as_str()),
        (200, "ok")
    );
    match ws_with_origin(&server, None).await {
        Err((503, body)) => assert!(body.contains("shutting down"), "{body}"),
        other => panic!("a new player during the drain: {:?}", other.map(|_| ())),
    }
    let (code, _) = close_of(&mut player).await;
    assert_eq!(code, 1001);
    drop(half);
    tokio::time::timeout(Duration::from_secs(15), &mut server.task)
        .await
        .expect("server did not exit")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err());
}

// ---------------------------------------------------------------------------
// Timeouts

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// `--header-timeout` also closes an HTTP/2 connection that never sends a
/// request, a connection that sends nothing at all, and an idle HTTP/1.1
/// keep-alive connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_timeout_covers_http2_and_idle_connections() {
    let server = TestServer::with(|c| c.header_timeout = Duration::from_millis(500)).await;

    let mut h2 = TcpStream::connect(server.addr).await.unwrap();
    h2.write_all(H2_PREFACE).await.unwrap();
    h2.write_all(H2_SETTINGS).await.unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut keep_alive = TcpStream::connect(server.addr).await.unwrap();
    keep_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();

    let h2_bytes = read_all(&mut h2).await;
    let took = start.elapsed();
    // The server's SETTINGS (type 4) came first; then, idle, it closed.
    assert_eq!(h2_bytes.get(3), Some(&4), "{h2_bytes:?}");
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    read_all(&mut silent).await;
    let answered = String::from_utf8(read_all(&mut keep_alive).await).unwrap();
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(answered.ends_with("ok"), "{answered}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------
// WebSockets over HTTP/2 (RFC 8441)

type H2 = http2::SendRequest<Empty<Bytes>>;
type H2Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn h2_connect(addr: SocketAddr) -> H2 {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut send, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake(io)
        .await
        .unwrap();
    tokio::spawn(conn);
    // One request first: the server's SETTINGS (extended CONNECT) arrive.
    let req = Request::get(format!("http://{addr}/healthz"))
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    send
}

async fn h2_websocket(send: &mut H2, addr: SocketAddr) -> H2Ws {
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}/ws"))
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "playfield.v1.json")
        .body(Empty::new())
        .unwrap();
    let mut resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.headers());
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "playfield.v1.json"
    );
    let upgraded = hyper::upgrade::on(&mut resp).await.unwrap();
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
}

/// Several WebSockets on one HTTP/2 connection each count: the first takes
/// the connection's place, the others their own. The connection stays open
/// past the header timeout while it carries a WebSocket, and gets its place
/// back when that WebSocket ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_http2_count_each() {
    let server = TestServer::with(|c| {
        c.max_connections = 2;
        c.header_timeout = Duration::from_millis(800);
    })
    .await;
    let mut h2 = h2_connect(server.addr).await;
    let mut first = h2_websocket(&mut h2, server.addr).await;
    assert_eq!(next_json(&mut first).await["type"], "welcome");
    let mut second = h2_websocket(&mut h2, server.addr).await;
    assert_eq!(next_json(&mut second).await["type"], "welcome");

    let mut third = h2_websocket(&mut h2, server.addr).await;
    let refused = next_json(&mut third).await;
    assert_eq!(refused["code"], "server_full", "{refused}");
    assert_eq!(close_of(&mut third).await.0, 1013);

    // Well past the header timeout, the connection still carries snapshots.
    let until = Instant::now() + Duration::from_millis(2000);
    while Instant::now() < until {
        let msg = next_json(&mut first).await;
        assert_eq!(msg["type"], "snapshot", "{msg}");
    }

    // Ending the stream is what matters here; the close handshake over an
    // HTTP/2 stream can race the stream's own end (the write then fails
    // with NO_ERROR), so its result is not checked.
    let _ = first.close(None).await;
    drop(first);
    let deadline = Instant::now() + WAIT;
    let mut again = loop {
        let mut ws = h2_websocket(&mut h2, server.addr).await;
        let msg = next_json(&mut ws).await;
        if msg["type"] == "welcome" {
            break ws;
        }
        assert!(Instant::now() < deadline, "never admitted again: {msg}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(next_json(&mut again).await["type"], "snapshot");
    assert_eq!(next_json(&mut second).await["type"], "snapshot");
    again
        .send(Message::text("{\"type\":\"ping\",\"id\":1}"))
        .await
        .unwrap();
    assert_eq!(
        loop {
            let m = next_json(&mut again).await;
            if m["type"] != "snapshot" {
                break m;
            }
        }["type"],
        "pong"
    );
}

/// Upgrade requests that are not ones we can take get a status and a body
/// saying what is missing; a WebSocket version we do not speak gets 426 and
/// the version we do (RFC 6455 §4.2.2).
#[tokio::test]
async fn bad_upgrade_requests_say_what_is_wrong() {
    let server = TestServer::start().await;
    let upgrade = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let old = get(
        server.addr,
        "/ws",
        &[
            upgrade[0],
            upgrade[1],
            upgrade[2],
            ("sec-websocket-version", "8"),
        ],
    )
    .await;
    assert_eq!(old.status, StatusCode::UPGRADE_REQUIRED, "{}", old.text());
    assert_eq!(old.header("sec-websocket-version"), Some("13"));
    assert!(
        old.text().contains("Sec-WebSocket-Version: 13"),
        "{}",
        old.text()
    );

    let keyless = get(
        server.addr,
        "/ws",
        &[upgrade[0], upgrade[1], ("sec-websocket-version", "13")],
    )
    .await;
    assert_eq!(
        keyless.status,
        StatusCode::BAD_REQUEST,
        "{}",
        keyless.text()
    );
    assert!(
        keyless.text().contains("Sec-WebSocket-Key"),
        "{}",
        keyless.text()
    );

    let plain = get(server.addr, "/ws", &[]).await;
    assert_eq!(plain.status, StatusCode::BAD_REQUEST, "{}", plain.text());
    assert!(
        plain.text().contains("Connection: upgrade"),
        "{}",
        plain.text()
    );
}
