//! The abuse suite, against the real `playfield` binary as users run it (a
//! child process on an ephemeral loopback port): connect/disconnect churn
//! (10,000 cycles) that must leak no players, rooms, file
//! descriptors or memory, and a hostile mix (a message flood, oversized
//! frames, WebSocket protocol violations, a slow reader, half-open and
//! half-closed connections, unfinished HTTP headers) while an honest player
//! plays on at the full tick rate.
//!
//! The server's open file descriptors come from `/proc/PID/fd`, its resident
//! memory from `VmRSS` in `/proc/PID/status`, and its players, rooms and
//! connections from `GET /rooms`; the server's log (stdout) says why each
//! player left. Linux only (`/proc`).
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    client_frame, expect_close, http_get, next_of, parse_frame, raw_handshake, Ws, MASK, WAIT,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// The tests in this file measure tick rates and resource use of their own
/// server process on a possibly small machine: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Subprotocols (see docs/PROTOCOL.md).
const JSON: &str = "playfield.v1.json";
const BIN: &str = "playfield.v1.bin";

// --- The server process --------------------------------------------------

/// A `playfield` process on `127.0.0.1:<ephemeral>`, killed on drop (a
/// failed test leaves no server behind). Its stdout (the log) is drained
/// into `log` by a thread, so the pipe never fills.
struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    // `Server` reaps the child in `Drop`, which the lint cannot see.
    #[allow(clippy::zombie_processes)]
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_playfield"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env_clear()
            .env("RUST_LOG", "info")
            // Players whose connection drops may be kept for a while to
            // resume: a long grace, so that a player kept when it should
            // not be (after close 1000, or a seed client) shows in every
            // settle below. (An environment variable: ignored by a server
            // without resuming.)
            .env("PLAYFIELD_RESUME_GRACE", "60")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "the server exited before listening"
            );
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split('/').next().unwrap().to_owned();
            }
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Server { child, addr, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn ws(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Open file descriptors of the server process.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the server process is gone")
            .count()
    }

    /// What the server's descriptors point at (for a failure message).
    fn fd_targets(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return Vec::new();
        };
        let mut v: Vec<String> = dir
            .filter_map(|e| e.ok())
            .map(|e| {
                let target = std::fs::read_link(e.path()).unwrap_or_default();
                format!(
                    "{} -> {}",
                    e.file_name().to_string_lossy(),
                    target.display()
                )
            })
            .collect();
        v.sort();
        v
    }

    /// Resident memory of the server process in KiB (`VmRSS`).
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server process is gone");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// `GET /rooms` (this request is itself one of the `connections`).
    async fn rooms(&self) -> Value {
        let (status, _, body) = http_get(&format!("http://{}/rooms", self.addr)).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `GET /rooms` until `players` are left in at most one room (the
    /// default one) and no connection is open but `connections`, besides the
    /// probe itself. Panics with the last answer after `within`.
    async fn settle(&self, players: u64, connections: u64, within: Duration) -> (Value, Duration) {
        let start = Instant::now();
        loop {
            let v = self.rooms().await;
            let rooms = v["rooms"].as_array().unwrap();
            let rooms_ok = if players == 0 {
                rooms.is_empty()
            } else {
                rooms.len() == 1 && rooms[0]["players"] == players
            };
            if v["players"] == players
                && rooms_ok
                && v["connections"].as_u64() <= Some(connections + 1)
            {
                return (v, start.elapsed());
            }
            assert!(
                start.elapsed() < within,
                "not settled to {players} players and {connections} connections after {within:?}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the descriptor count until it is at most `bound`.
    async fn fds_settle(&self, bound: usize, within: Duration) -> usize {
        let start = Instant::now();
        loop {
            let n = self.fds();
            if n <= bound {
                return n;
            }
            assert!(
                start.elapsed() < within,
                "the server holds {n} file descriptors {within:?} later, more than {bound}:\n{}",
                self.fd_targets().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Log lines that contain `needle`.
    fn log_with(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.contains(needle)).cloned().collect()
    }

    /// Waits for the log line saying why player `id` left.
    async fn left(&self, id: &str, within: Duration) -> String {
        let needle = format!("Player {id} disconnected.");
        let start = Instant::now();
        loop {
            if let Some(line) = self.log_with(&needle).pop() {
                return line;
            }
            assert!(
                start.elapsed() < within,
                "player {id} still connected after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server is still running and logged no panic and no error.
    fn healthy(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the server exited"
        );
        let log = self.log.lock().unwrap();
        let bad: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("panic") || l.contains(" ERROR "))
            .take(10)
            .collect();
        assert!(bad.is_empty(), "the server logged errors: {bad:#?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- WebSocket clients ----------------------------------------------------

/// A WebSocket client (tokio-tungstenite), with `subprotocol` if any.
async fn ws_connect(url: &str, subprotocol: Option<&str>) -> Result<Ws, String> {
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    if let Some(p) = subprotocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    Ok(ws)
}

/// The first text message, as JSON (pings skipped).
async fn first_json(ws: &mut Ws) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str()).map_err(|e| e.to_string())
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => return Err(format!("expected a first message, got {other:?}")),
        }
    }
}

/// Closes with 1000 (normal closure: "left for good") and reads until the
/// connection ends. `Ok(true)` if the server answered with its close frame.
async fn close_normally(ws: &mut Ws) -> Result<bool, String> {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    ws.close(Some(frame))
        .await
        .map_err(|e| format!("close: {e}"))?;
    let mut echoed = false;
    let drained = timeout(Duration::from_secs(10), async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(_)) => echoed = true,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
    .await;
    drained.map_err(|_| "the server kept the connection open after our close".to_owned())?;
    Ok(echoed)
}

// --- Raw WebSocket clients, to send what libraries won't -------------------

/// Sets the TCP maximum segment size a socket announces (`TCP_MAXSEG`),
/// before it connects: the server then sends it small segments, and the
/// kernel grows the server's send buffer to tens of KB instead of the
/// megabytes it allows a loopback peer (64 KB segments), so a client that
/// stops reading fills it in seconds.
fn set_tcp_maxseg(socket: &TcpSocket, mss: i32) {
    use std::ffi::{c_int, c_void};
    use std::os::fd::AsRawFd;
    extern "C" {
        fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
    }
    const IPPROTO_TCP: c_int = 6;
    const TCP_MAXSEG: c_int = 2;
    // SAFETY: a valid socket, and a pointer to an int with its size.
    let rc = unsafe {
        setsockopt(
            socket.as_raw_fd(),
            IPPROTO_TCP,
            TCP_MAXSEG,
            (&mss as *const c_int).cast(),
            std::mem::size_of::<c_int>() as u32,
        )
    };
    assert_eq!(rc, 0, "TCP_MAXSEG: {}", std::io::Error::last_os_error());
}

/// A raw TCP connection to the server, optionally with a small receive
/// buffer and segment size (see [`set_tcp_maxseg`]).
async fn tcp(server: &Server, small: bool) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if small {
        socket.set_recv_buffer_size(1024).unwrap();
        set_tcp_maxseg(&socket, 536);
    }
    socket.connect(server.addr.parse().unwrap()).await.unwrap()
}

/// A WebSocket opened by hand on a raw connection: the stream, and the bytes
/// read past the response headers.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn open(server: &Server, path: &str, subprotocol: Option<&str>, small: bool) -> Raw {
        let tcp = tcp(server, small).await;
        let (tcp, buf) = raw_handshake(tcp, &server.addr, path, subprotocol).await;
        Raw { tcp, buf }
    }

    /// The next frame from the server: opcode and payload. `None` when the
    /// connection ends.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((len, op, payload)) = parse_frame(&self.buf) {
                self.buf.drain(..len);
                return Some((op, payload));
            }
            let mut chunk = [0u8; 4096];
            match timeout(WAIT, self.tcp.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                Ok(_) => return None, // closed, or reset
                Err(_) => panic!("timed out waiting for a frame"),
            }
        }
    }

    /// The next text frame as JSON.
    async fn json(&mut self) -> Value {
        loop {
            let (op, payload) = self.frame().await.expect("connection ended");
            if op == 0x1 {
                return serde_json::from_slice(&payload).unwrap();
            }
        }
    }

    /// The id the server gave us (seed `init` or native `welcome`).
    async fn join(&mut self) -> String {
        let first = self.json().await;
        assert!(
            first["type"] == "init" || first["type"] == "welcome",
            "{first}"
        );
        match &first["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// Reads frames until the server's close frame: its code and reason.
    /// `None` if the connection ended without one.
    async fn close_frame(&mut self) -> Option<(u16, String)> {
        while let Some((op, payload)) = self.frame().await {
            if op == 0x8 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return Some((code, String::from_utf8_lossy(&payload[2..]).to_string()));
            }
        }
        None
    }
}

/// FIN + text.
const TEXT: u8 = 0x81;

// --- 1. Churn -------------------------------------------------------------

/// How one churn cycle connects and leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Native JSON; leaves with close 1000.
    Json,
    /// Native binary; leaves with close 1000.
    Bin,
    /// Seed protocol; drops the TCP connection (FIN), no close frame.
    SeedDrop,
    /// Seed protocol; resets the TCP connection (RST), no close frame.
    SeedReset,
    /// Native JSON asking for an invalid room: refused (`invalid_room`,
    /// close 1008) before it joins.
    Refused,
}

/// Cycle `i`'s kind: the four ways to leave in turn, and every 25th cycle
/// one that is refused.
fn kind_of(i: usize) -> Kind {
    if i % 25 == 12 {
        return Kind::Refused;
    }
    [Kind::Json, Kind::SeedDrop, Kind::Bin, Kind::SeedReset][i % 4]
}

/// Counts of what the cycles saw.
#[derive(Default)]
struct Tally {
    /// Cycles done, by `Kind as usize`.
    done: [AtomicUsize; 5],
    /// Native clients whose 1000 close the server answered with its own.
    echoed: AtomicUsize,
    failures: AtomicUsize,
    first_failures: Mutex<Vec<String>>,
}

impl Tally {
    fn done(&self, kind: Kind) -> usize {
        self.done[kind as usize].load(Ordering::Relaxed)
    }

    /// Cycles that joined a room (all but the refused ones).
    fn joined(&self) -> usize {
        self.done
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .sum::<usize>()
            - self.done(Kind::Refused)
    }
}

/// One cycle: connect, read the first message, leave. Native clients close
/// with 1000 (a native client that vanishes may be kept for a while to
/// resume, so they never just drop); seed clients cannot resume and vanish.
/// Rooms: a few shared ones, and every tenth cycle a room of its own, so
/// rooms are created and removed all the time.
async fn cycle(server: &Server, i: usize, tally: &Tally) -> Result<(), String> {
    let kind = kind_of(i);
    let room = if i % 10 == 9 {
        format!("solo{i}")
    } else {
        format!("churn{}", i % 3)
    };
    let (path, proto, first) = match kind {
        Kind::Json => (format!("/ws?room={room}"), Some(JSON), "welcome"),
        Kind::Bin => (format!("/ws?room={room}"), Some(BIN), "welcome"),
        Kind::SeedDrop | Kind::SeedReset => (format!("/?room={room}"), None, "init"),
        Kind::Refused => ("/ws?room=no%20spaces".to_owned(), Some(JSON), "error"),
    };
    let mut ws = timeout(Duration::from_secs(10), async {
        let mut ws = ws_connect(&server.ws(&path), proto).await?;
        let v = first_json(&mut ws).await?;
        if v["type"] != first {
            return Err(format!("{kind:?}: expected `{first}`, got {v}"));
        }
        if first == "error" && v["code"] != "invalid_room" {
            return Err(format!("{kind:?}: expected `invalid_room`, got {v}"));
        }
        if first == "welcome" && v["room"] != room.as_str() {
            return Err(format!("{kind:?}: joined the wrong room: {v}"));
        }
        Ok(ws)
    })
    .await
    .map_err(|_| format!("{kind:?}: no first message within 10 s"))??;
    match kind {
        Kind::Json | Kind::Bin => {
            if close_normally(&mut ws).await? {
                tally.echoed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Kind::SeedDrop => drop(ws),
        Kind::SeedReset => {
            if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
                tcp.set_zero_linger().map_err(|e| e.to_string())?;
            }
            drop(ws);
        }
        Kind::Refused => {
            let closed = timeout(Duration::from_secs(10), async {
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Close(Some(frame)))) => {
                            return Some(u16::from(frame.code))
                        }
                        Some(Ok(_)) => continue,
                        _ => return None,
                    }
                }
            })
            .await
            .map_err(|_| "Refused: no close within 10 s".to_owned())?;
            if closed != Some(1008) {
                return Err(format!("Refused: closed with {closed:?}, not 1008"));
            }
            // Our answer to its close goes out as we read on to the end.
            let _ = timeout(Duration::from_secs(10), async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
    }
    tally.done[kind as usize].fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Runs `count` cycles, `concurrency` at a time; returns how long it took.
async fn churn(
    server: &Arc<Server>,
    count: usize,
    concurrency: usize,
    tally: &Arc<Tally>,
) -> Duration {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (server, tally, next) = (Arc::clone(server), Arc::clone(tally), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    if let Err(e) = cycle(&server, i, &tally).await {
                        tally.failures.fetch_add(1, Ordering::Relaxed);
                        let mut first = tally.first_failures.lock().unwrap();
                        if first.len() < 10 {
                            first.push(format!("cycle {i}: {e}"));
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("a churn worker panicked");
    }
    start.elapsed()
}

/// 10,000 connect → first message → leave cycles, 48 at a time, across
/// three shared rooms and a thousand short-lived ones (1-2 s in a release
/// build on 2 cores, about 9 s in a debug build).
/// Afterwards nothing is left: no players, no rooms, no connections, the
/// file descriptors of the warmed-up server and less than 48 MiB more
/// resident memory than it had then.
///
/// Timeouts are long (idle 60 s, headers 30 s) and the settle deadline is
/// 15 s, so the cleanup measured is the server noticing each client go, not
/// its idle reaper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaks_no_players_rooms_fds_or_memory() {
    let _serial = SERIAL.lock().await;
    const CYCLES: usize = 10_000;
    const WARMUP: usize = 500;
    const CONCURRENCY: usize = 48;
    /// Resident memory the churn may add to the warmed-up server (measured:
    /// under 1 MiB). A leak of 5 KB per cycle would break it.
    const RSS_BOUND_KIB: u64 = 48 * 1024;
    /// Descriptors above the warmed-up count we tolerate (measured: 0); a
    /// leak of one per cycle would be hundreds.
    const FD_SLACK: usize = 4;
    let server = Arc::new(Server::start(&[
        "--ping-interval",
        "20",
        "--idle-timeout",
        "60",
        "--header-timeout",
        "30",
        "--send-timeout",
        "5",
    ]));
    let fds_fresh = server.fds();

    // Warm up: the runtime's threads, the allocator's arenas, buffers.
    let warmup = Arc::new(Tally::default());
    timeout(
        Duration::from_secs(60),
        churn(&server, WARMUP, CONCURRENCY, &warmup),
    )
    .await
    .expect("the warm-up took over 60 s");
    assert_eq!(
        warmup.failures.load(Ordering::Relaxed),
        0,
        "{:?}",
        warmup.first_failures.lock().unwrap()
    );
    server.settle(0, 0, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds_before = server.fds();
    let rss_before = server.rss_kib();

    // The churn, with the server's descriptors and memory sampled meanwhile.
    let tally = Arc::new(Tally::default());
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (server, sampling) = (Arc::clone(&server), Arc::clone(&sampling));
        tokio::spawn(async move {
            let (mut fds, mut rss) = (0, 0);
            while sampling.load(Ordering::Relaxed) {
                fds = fds.max(server.fds());
                rss = rss.max(server.rss_kib());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (fds, rss)
        })
    };
    let took = timeout(
        Duration::from_secs(120),
        churn(&server, CYCLES, CONCURRENCY, &tally),
    )
    .await
    .expect("the churn took over 120 s");
    sampling.store(false, Ordering::Relaxed);
    let (peak_fds, peak_rss) = sampler.await.unwrap();
    let failures = tally.failures.load(Ordering::Relaxed);
    assert_eq!(
        failures,
        0,
        "{failures} of {CYCLES} cycles failed; the first: {:#?}",
        tally.first_failures.lock().unwrap()
    );
    let refused = tally.done(Kind::Refused);
    assert_eq!(tally.joined() + refused, CYCLES);

    let (rooms, settled_in) = server.settle(0, 0, Duration::from_secs(15)).await;
    let fds_after = server
        .fds_settle(fds_before + FD_SLACK, Duration::from_secs(10))
        .await;
    let rss_after = server.rss_kib();
    let growth = rss_after.saturating_sub(rss_before);
    let per_sec = CYCLES as f64 / took.as_secs_f64();
    println!(
        "churn: {CYCLES} cycles, {CONCURRENCY} at a time, in {:.2} s ({per_sec:.0}/s): {} json + {} bin closing with 1000, {} seed FIN + {} seed RST drops, {refused} refused (1008); settled in {:.2} s: {rooms}",
        took.as_secs_f64(),
        tally.done(Kind::Json),
        tally.done(Kind::Bin),
        tally.done(Kind::SeedDrop),
        tally.done(Kind::SeedReset),
        settled_in.as_secs_f64(),
    );
    // RFC 6455 (5.5.1): a close frame is answered with one, so a browser
    // sees a clean close (not 1006) after leaving normally.
    let clean = tally.done(Kind::Json) + tally.done(Kind::Bin);
    let echoed = tally.echoed.load(Ordering::Relaxed);
    println!("churn: server close frames answering our 1000: {echoed} of {clean}");
    assert_eq!(echoed, clean, "every close is answered");
    println!(
        "churn: fds fresh {fds_fresh}, after warm-up {fds_before}, peak {peak_fds}, after {fds_after} (bound {})",
        fds_before + FD_SLACK
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "churn: RSS after warm-up {:.1} MiB, peak {:.1} MiB, after {:.1} MiB: growth {:.2} MiB (bound {} MiB)",
        mib(rss_before),
        mib(peak_rss),
        mib(rss_after),
        mib(growth),
        RSS_BOUND_KIB / 1024
    );
    assert!(
        growth < RSS_BOUND_KIB,
        "RSS grew by {growth} KiB over {CYCLES} cycles: {rss_before} -> {rss_after} KiB"
    );
    // Every player that joined was logged out again, and nothing went wrong.
    let joined = server.log_with(" connected. Total players:").len();
    let left = server.log_with(" disconnected. Total players:").len();
    assert_eq!(joined, left, "players joined {joined}, left {left}");
    assert_eq!(joined, warmup.joined() + tally.joined());
    Arc::into_inner(server)
        .expect("all churn workers are done")
        .healthy();
}

// --- 2. A hostile mix while an honest player plays -------------------------

/// What the honest player saw: `(arrival, tick)` of each snapshot.
struct Seen {
    ws: Ws,
    snapshots: Vec<(Instant, u64)>,
    sent: u64,
    last_ack: u64,
    trouble: Option<String>,
}

/// A native JSON player that sends one input per tick (one per snapshot,
/// going back and forth) and reads every snapshot, until `stop`.
async fn honest(ws: Ws, mut stop: tokio::sync::watch::Receiver<bool>) -> Seen {
    let mut seen = Seen {
        ws,
        snapshots: Vec::new(),
        sent: 0,
        last_ack: 0,
        trouble: None,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        tokio::select! {
            _ = stop.changed() => break,
            msg = timeout(Duration::from_secs(3), seen.ws.next()) => {
                let text = match msg {
                    Err(_) => {
                        seen.trouble = Some("no message for 3 s".into());
                        break;
                    }
                    Ok(Some(Ok(Message::Text(t)))) => t,
                    Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                    other => {
                        seen.trouble = Some(format!("connection trouble: {other:?}"));
                        break;
                    }
                };
                let v: Value = serde_json::from_str(text.as_str()).unwrap();
                if v["type"] != "snapshot" {
                    seen.trouble = Some(format!("unexpected message: {v}"));
                    break;
                }
                seen.snapshots.push((Instant::now(), v["tick"].as_u64().unwrap()));
                seen.last_ack = v["ack"].as_u64().unwrap();
                seen.sent += 1;
                let x = if (seen.sent / 20).is_multiple_of(2) { 1 } else { -1 };
                let input = json!({"type":"input","seq":seen.sent,"input":{"x":x,"y":0}});
                if let Err(e) = seen.ws.send(Message::text(input.to_string())).await {
                    seen.trouble = Some(format!("send: {e}"));
                    break;
                }
            }
        }
    }
    seen
}

const TICK_RATE: f64 = 20.0;
const IDLE_TIMEOUT: Duration = Duration::from_secs(6);
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_MESSAGE: usize = 1024;

/// Sends several hundred inputs a second: told `rate_limited`, then closed
/// with 1008 after 5 s over the rate.
async fn flooder(server: &Server) -> String {
    let mut ws = ws_connect(&server.ws("/ws"), Some(JSON)).await.unwrap();
    assert_eq!(next_of(&mut ws, "welcome").await["type"], "welcome");
    let (mut tx, mut rx) = ws.split();
    let start = Instant::now();
    // 500 messages a second for at most 20 s.
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let writer = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(10));
        for _ in 0..2000 {
            every.tick().await;
            for _ in 0..5 {
                let seq = counter.fetch_add(1, Ordering::Relaxed) + 1;
                let input = json!({"type":"input","seq":seq,"input":{"x":0,"y":1}});
                if tx.send(Message::text(input.to_string())).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut rate_limited = 0;
    let mut first_at = None;
    let close = loop {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "flooder never closed"
        );
        match timeout(WAIT, rx.next()).await.expect("flooder: silence") {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "error" {
                    assert_eq!(v["code"], "rate_limited", "{v}");
                    rate_limited += 1;
                    first_at.get_or_insert(start.elapsed());
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.expect("a close code"),
            Some(Ok(_)) => {}
            other => panic!("flooder: connection ended without a close frame: {other:?}"),
        }
    };
    let closed_after = start.elapsed();
    writer.abort();
    let sent = sent.load(Ordering::Relaxed);
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
    assert!(
        close.reason.contains("message rate limit"),
        "{}",
        close.reason
    );
    assert!(rate_limited >= 1, "no rate_limited error before the close");
    // 5 s over the rate; generous above for a loaded machine.
    assert!(
        closed_after >= Duration::from_secs(4) && closed_after < Duration::from_secs(15),
        "closed after {closed_after:?}"
    );
    format!(
        "flooder: {rate_limited} rate_limited errors (first after {:?}), close 1008 after {closed_after:.1?} ({sent} messages sent)",
        first_at.unwrap()
    )
}

/// A message over `--max-message-bytes`, binary on the binary protocol and
/// text on the seed protocol, and a frame that only announces a gigabyte:
/// each closes with 1009 at once.
async fn oversized(server: &Server) -> String {
    let start = Instant::now();
    let mut bin = ws_connect(&server.ws("/ws"), Some(BIN)).await.unwrap();
    assert_eq!(next_of(&mut bin, "welcome").await["type"], "welcome");
    bin.send(Message::binary(vec![1u8; 8 * MAX_MESSAGE]))
        .await
        .unwrap();
    let close = expect_close(&mut bin).await;
    assert_eq!(u16::from(close.code), 1009, "{close:?}");
    assert!(close.reason.contains("1024 bytes"), "{}", close.reason);

    let mut seed = ws_connect(&server.ws("/"), None).await.unwrap();
    assert_eq!(next_of(&mut seed, "init").await["type"], "init");
    seed.send(Message::text("x".repeat(2 * MAX_MESSAGE)))
        .await
        .unwrap();
    let close = expect_close(&mut seed).await;
    assert_eq!(u16::from(close.code), 1009, "{close:?}");

    // Only the header of a 1 GiB frame: refused on the header, without
    // waiting for (or buffering) the payload.
    let mut raw = Raw::open(server, "/", None, false).await;
    raw.join().await;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&MASK.unwrap());
    header.extend_from_slice(&[0u8; 100]);
    raw.tcp.write_all(&header).await.unwrap();
    let (code, reason) = raw.close_frame().await.expect("no close frame for 1 GiB");
    assert_eq!(code, 1009, "{reason}");
    format!(
        "oversized: three clients closed with 1009 in {:.1?}",
        start.elapsed()
    )
}

/// Frames that break RFC 6455: each closes with 1002 and says why.
async fn violator(server: &Server) -> String {
    let ping = br#"{"type":"ping","id":1}"#;
    let cases: [(&str, Option<&str>, Vec<u8>, &str); 4] = [
        (
            "/",
            None,
            client_frame(TEXT, br#"{"type":"move","direction":"UP"}"#, None),
            "unmasked",
        ),
        (
            "/ws",
            Some(JSON),
            client_frame(0x83, b"x", MASK),
            "reserved opcode 0x3",
        ),
        (
            "/ws",
            Some(BIN),
            client_frame(0x8B, b"", MASK),
            "reserved opcode 0xb",
        ),
        (
            "/ws",
            Some(JSON),
            client_frame(0xC1, ping, MASK),
            "reserved bits",
        ),
    ];
    let start = Instant::now();
    for (path, proto, bad, expect) in cases {
        let mut raw = Raw::open(server, path, proto, false).await;
        raw.join().await;
        raw.tcp.write_all(&bad).await.unwrap();
        let (code, reason) = raw
            .close_frame()
            .await
            .unwrap_or_else(|| panic!("{expect}: no close frame"));
        assert_eq!(code, 1002, "{expect}: {reason}");
        assert!(reason.contains(expect), "{expect}: {reason}");
    }
    format!(
        "violator: 4 protocol violations closed with 1002 in {:.1?}",
        start.elapsed()
    )
}

/// A seed client that never reads again after joining (a tiny receive
/// window and segment size), while it sends bad moves within the rate,
/// each of which earns an `error` about as long (it names the direction,
/// here 900 characters): the server's buffer for it fills and it is dropped
/// after the send timeout, well before the idle timeout.
async fn slow_reader(server: &Server) -> String {
    let mut raw = Raw::open(server, "/", None, true).await;
    let id = raw.join().await;
    let start = Instant::now();
    let direction = "N".repeat(900);
    let text = format!(r#"{{"type":"move","direction":"{direction}"}}"#);
    assert!(text.len() < MAX_MESSAGE);
    let bad_move = client_frame(TEXT, text.as_bytes(), MASK);
    let Raw { tcp, .. } = raw;
    let (_read_half, mut write_half) = tcp.into_split();
    let written = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&written);
    let writer = tokio::spawn(async move {
        // A burst the bucket holds (it holds 120), then 40 a second (the
        // rate is 60), for at most 20 s.
        for i in 0..100 + 40 * 20 {
            let write = write_half.write_all(&bad_move);
            match timeout(Duration::from_secs(2), write).await {
                Ok(Ok(())) => counter.fetch_add(1, Ordering::Relaxed),
                _ => return, // the server stopped reading us, or hung up
            };
            if i >= 100 {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    });
    let line = server
        .left(&id, IDLE_TIMEOUT + Duration::from_secs(10))
        .await;
    let after = start.elapsed();
    writer.abort();
    assert!(line.contains("send timeout"), "{line}");
    assert!(after < IDLE_TIMEOUT, "dropped after {after:?}: {line}");
    format!(
        "slow reader: dropped by the send timeout after {after:.1?} ({} bad moves written)",
        written.load(Ordering::Relaxed)
    )
}

/// A seed client that completes the handshake and then does nothing at
/// all (no reads, no writes, no pongs): closed with 1001 after the idle
/// timeout.
async fn half_open(server: &Server) -> String {
    let mut raw = Raw::open(server, "/", None, false).await;
    let id = raw.join().await;
    let start = Instant::now();
    let line = server
        .left(&id, IDLE_TIMEOUT + Duration::from_secs(10))
        .await;
    let after = start.elapsed();
    assert!(line.contains("idle timeout"), "{line}");
    assert!(
        after >= IDLE_TIMEOUT - Duration::from_millis(500),
        "after {after:?}"
    );
    // Everything the server sent meanwhile ends with its close frame.
    let (code, reason) = raw.close_frame().await.expect("no close frame");
    assert_eq!(code, 1001, "{reason}");
    format!("half-open: closed with 1001 ({reason:?}) after {after:.1?}")
}

/// A seed client that shuts down its sending side right after joining: the
/// server sees the end of the stream and lets it go at once, long before
/// the idle timeout.
async fn half_closed(server: &Server) -> String {
    let mut raw = Raw::open(server, "/", None, false).await;
    let id = raw.join().await;
    let start = Instant::now();
    raw.tcp.shutdown().await.unwrap();
    let line = server
        .left(&id, IDLE_TIMEOUT + Duration::from_secs(10))
        .await;
    let after = start.elapsed();
    assert!(after < IDLE_TIMEOUT / 2, "noticed after {after:?}: {line}");
    let reason = line.split("reason=").nth(1).unwrap_or("?").to_owned();
    // And the server closes its side too.
    let mut rest = Vec::new();
    let _ = timeout(Duration::from_secs(5), raw.tcp.read_to_end(&mut rest))
        .await
        .expect("the server kept its side open");
    format!("half-closed: let go after {after:.1?} ({reason})")
}

/// Connections that never finish their request headers: one sends part of
/// them, one dribbles a byte every 100 ms, one sends nothing. All are
/// closed after the header timeout.
async fn slowloris(server: &Server) -> String {
    async fn closed_after(server: &Server, first: &[u8], dribble: bool) -> Duration {
        let mut tcp = tcp(server, false).await;
        let start = Instant::now();
        tcp.write_all(first).await.unwrap();
        let mut buf = [0u8; 1024];
        loop {
            assert!(
                start.elapsed() < HEADER_TIMEOUT + Duration::from_secs(10),
                "still open long after the header timeout"
            );
            let tick = tokio::time::sleep(Duration::from_millis(100));
            tokio::select! {
                r = tcp.read(&mut buf) => match r {
                    Ok(n) if n > 0 => {} // a 408, say: read on to the end
                    _ => return start.elapsed(),
                },
                () = tick => {
                    if dribble && tcp.write_all(b"a").await.is_err() {
                        return start.elapsed();
                    }
                }
            }
        }
    }
    let partial = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n";
    let dribbling = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let (a, b, c) = tokio::join!(
        closed_after(server, partial, false),
        closed_after(server, dribbling, true),
        closed_after(server, b"", false),
    );
    for t in [a, b, c] {
        assert!(t >= HEADER_TIMEOUT / 2, "closed too early: {t:?}");
    }
    format!("slowloris: partial headers closed after {a:.1?}, dribbling after {b:.1?}, silent after {c:.1?}")
}

/// An honest native player plays while every kind of abuser above runs at
/// once, in its room. Its snapshots keep coming at the tick rate (at least
/// 90 %, no gap of a second), the room's ticks keep their pace, and
/// afterwards every abuser is gone: one player left, then none when it
/// leaves, and the file descriptors of the fresh server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mix_does_not_slow_an_honest_player() {
    let _serial = SERIAL.lock().await;
    const FD_SLACK: usize = 4;
    let mut server = Server::start(&[
        "--tick-rate",
        "20",
        "--ping-interval",
        "1",
        "--idle-timeout",
        &IDLE_TIMEOUT.as_secs().to_string(),
        "--send-timeout",
        &SEND_TIMEOUT.as_secs().to_string(),
        "--header-timeout",
        &HEADER_TIMEOUT.as_secs().to_string(),
        "--max-message-bytes",
        &MAX_MESSAGE.to_string(),
    ]);
    server.settle(0, 0, WAIT).await;
    let fds_before = server.fds();
    let rss_before = server.rss_kib();

    let mut ws = ws_connect(&server.ws("/ws"), Some(JSON)).await.unwrap();
    let welcome = next_of(&mut ws, "welcome").await;
    assert_eq!(welcome["tick_rate"], 20);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let player = tokio::spawn(honest(ws, stopped));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let start = Instant::now();
    let reports = timeout(Duration::from_secs(60), async {
        tokio::join!(
            flooder(&server),
            oversized(&server),
            violator(&server),
            slow_reader(&server),
            half_open(&server),
            half_closed(&server),
            slowloris(&server),
        )
    })
    .await
    .expect("the abusers did not finish within 60 s");
    let window = start.elapsed();
    let end = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    let mut seen = player.await.unwrap();
    assert!(seen.trouble.is_none(), "honest player: {:?}", seen.trouble);

    // What the honest player saw while the abusers ran.
    let during: Vec<(Instant, u64)> = seen
        .snapshots
        .iter()
        .copied()
        .filter(|(at, _)| *at >= start && *at <= end)
        .collect();
    let at_start = seen.snapshots.iter().rev().find(|(at, _)| *at < start);
    let at_end = seen.snapshots.iter().find(|(at, _)| *at > end);
    let mut worst_gap = Duration::ZERO;
    let mut jumps = 0;
    let bracket: Vec<&(Instant, u64)> = at_start.into_iter().chain(&during).chain(at_end).collect();
    for w in bracket.windows(2) {
        worst_gap = worst_gap.max(w[1].0 - w[0].0);
        if w[1].1 != w[0].1 + 1 {
            jumps += 1;
        }
    }
    let secs = window.as_secs_f64();
    let received = during.len() as f64 / secs;
    let ticks = (during.last().unwrap().1 - during.first().unwrap().1) as f64 / secs;
    println!(
        "honest player over the {secs:.1} s abuse window: {} snapshots ({received:.1}/s), room ticks {ticks:.1}/s, {jumps} skipped-tick gaps, worst gap {worst_gap:.0?}; {} inputs sent, last ack {}",
        during.len(),
        seen.sent,
        seen.last_ack,
    );
    for r in &[
        reports.0, reports.1, reports.2, reports.3, reports.4, reports.5, reports.6,
    ] {
        println!("  {r}");
    }
    assert!(
        received >= 0.9 * TICK_RATE,
        "the honest player got {received:.1} snapshots/s at {TICK_RATE} Hz"
    );
    assert!(
        ticks >= 0.9 * TICK_RATE,
        "the room ticked {ticks:.1} times/s at {TICK_RATE} Hz"
    );
    assert!(
        worst_gap < Duration::from_secs(1),
        "a {worst_gap:?} gap between snapshots"
    );
    assert!(
        jumps * 10 <= during.len(),
        "{jumps} of {} snapshots skipped ticks",
        during.len()
    );
    // Its inputs were applied all along (one per tick: the ack keeps up).
    assert!(
        seen.last_ack + 8 >= seen.sent,
        "ack {} for {} inputs",
        seen.last_ack,
        seen.sent
    );

    // Every abuser is gone; the honest player is still in.
    let (rooms, _) = server.settle(1, 1, Duration::from_secs(15)).await;
    assert_eq!(rooms["rooms"][0]["name"], "lobby", "{rooms}");
    // (Not asserted: the server does not answer a client's close frame
    // with its own; see the churn test.)
    let echoed = close_normally(&mut seen.ws).await.unwrap();
    let (rooms, _) = server.settle(0, 0, Duration::from_secs(15)).await;
    let fds_after = server
        .fds_settle(fds_before + FD_SLACK, Duration::from_secs(10))
        .await;
    let rss_after = server.rss_kib();
    println!(
        "hostile mix: honest player's close answered: {echoed}; fds {fds_before} before, {fds_after} after; RSS {:.1} MiB before, {:.1} MiB after; {rooms}",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    server.healthy();
}
