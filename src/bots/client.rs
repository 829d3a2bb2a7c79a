//! One bot: connects, plays like a person holding a direction key, reads
//! every message and reports what it saw into the shared [`Stats`].
//!
//! Thousands of these share one thread, so the steady-state path (a snapshot
//! arrives, an input is due) does no allocation the wire does not force on
//! it, and a bot that does not decode reads only the few header bytes it
//! needs.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::dots::DotInput;
use crate::protocol::bin::{self, op, read_header, Reader, Replica};
use crate::replicate::FieldKind;

use super::stats::Stats;
use super::{BotProtocol, Shared};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest a bot waits for its TCP connection, handshake and first message.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one outgoing message may wait on a server that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Inputs awaiting their acknowledgement; more than this in flight means
/// the server is far behind, and the oldest are dropped from the latency
/// sample rather than growing without bound.
const PENDING_MAX: usize = 64;
/// A bot reads its snapshots into a buffer this big. Small, because ten
/// thousand bots each hold one, and because tungstenite zeroes this much
/// before every read (also the one that finds the socket empty): at 16 KiB
/// that memset alone took an eighth of the bots' core. A delta is a few KiB;
/// larger messages are read in several pieces.
const READ_BUFFER: usize = 4 * 1024;
/// How far into a `state_update` its `type` is looked for: it comes first,
/// and the players after it can run to hundreds of KiB.
const HEAD_BYTES: usize = 64;

/// Eight directions for native bots (the server normalises diagonals).
const DIRS8: [(f64, f64); 8] = [
    (1.0, 0.0),
    (1.0, 1.0),
    (0.0, 1.0),
    (-1.0, 1.0),
    (-1.0, 0.0),
    (-1.0, -1.0),
    (0.0, -1.0),
    (1.0, -1.0),
];

/// The seed's four moves, as the exact messages; static so sending one
/// allocates nothing.
const SEED_MOVES: [&str; 4] = [
    r#"{"type":"move","direction":"UP"}"#,
    r#"{"type":"move","direction":"RIGHT"}"#,
    r#"{"type":"move","direction":"DOWN"}"#,
    r#"{"type":"move","direction":"LEFT"}"#,
];

/// How a bot's session ended.
enum End {
    /// The run is over: the bot closes the socket itself.
    Stopped,
    /// The server closed the connection, or it failed.
    Lost,
    /// Its lifetime is over (`--churn`): it closes and reconnects.
    Churned,
}

/// Runs bot `index` until the run stops or its connection ends.
pub(super) async fn run(shared: Rc<Shared>, index: u32) {
    let mut first = true;
    // With `--churn`, a bot leaves after its lifetime and comes back as a new
    // player, until the run stops.
    let mut rng = SmallRng::seed_from_u64(shared.seed ^ u64::from(index).wrapping_mul(0x9E37));
    loop {
        let connected = tokio::select! {
            biased;
            () = shared.stop.cancelled() => None,
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect(&shared, index)) => Some(r),
        };
        let (mut ws, mut bot) = match connected {
            Some(Ok(Ok(c))) => c,
            Some(Ok(Err(e))) => {
                shared.connect_failed(index, &e);
                return;
            }
            Some(Err(_)) => {
                shared.connect_failed(index, "timed out");
                return;
            }
            // Stopped before it could connect: the run gave up waiting for it.
            None if first => {
                shared.connect_failed(index, "the run ended first");
                return;
            }
            None => return,
        };
        if first {
            shared.connected.set(shared.connected.get() + 1);
            first = false;
        } else {
            shared.reconnects.set(shared.reconnects.get() + 1);
        }
        shared.open.set(shared.open.get() + 1);
        let leave_at = shared
            .lifetime
            .map(|mean| Instant::now() + mean.mul_f64(rng.random_range(0.5..1.5)));
        let end = bot.play(&shared, &mut ws, leave_at).await;
        shared.open.set(shared.open.get().saturating_sub(1));
        // A bot that left on purpose has no stall to report.
        if !matches!(end, End::Churned) {
            bot.finish(&shared);
        }
        match end {
            End::Stopped | End::Churned => {
                // Close cleanly (1000: leaving for good, so the server
                // removes the player now rather than keeping it for a
                // resume), and wait for the server's close; bounded.
                let deadline = match end {
                    End::Stopped => shared.shutdown_deadline(),
                    _ => Instant::now() + Duration::from_secs(2),
                };
                let _ = tokio::time::timeout_at(deadline, async {
                    let bye = CloseFrame {
                        code: CloseCode::Normal,
                        reason: Utf8Bytes::from_static("bye"),
                    };
                    if ws.close(Some(bye)).await.is_ok() {
                        while let Some(Ok(_)) = ws.next().await {}
                    }
                })
                .await;
                if matches!(end, End::Stopped) {
                    return;
                }
            }
            End::Lost => {
                shared.stats.borrow_mut().disconnects += 1;
                return;
            }
        }
    }
}

/// Opens the WebSocket and waits for `welcome` (native) or `init` (seed).
async fn connect(shared: &Shared, index: u32) -> Result<(Ws, Bot), String> {
    let mut request = shared
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad URL: {e}"))?;
    if let Some(sub) = shared.protocol.subprotocol() {
        let value = sub.parse().map_err(|e| format!("bad subprotocol: {e}"))?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", value);
    }
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    // No Nagle: an input is a few dozen bytes and must leave at once, or
    // latency would measure the TCP stack rather than the server.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .map_err(|e| e.to_string())?;
    let decode = index < shared.decode_clients;
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                return Err(match frame {
                    Some(f) => format!("closed by the server ({}: {})", f.code, f.reason),
                    None => "closed by the server".to_owned(),
                })
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection ended before the first message".to_owned()),
        };
        let first: serde_json::Value =
            serde_json::from_str(text.as_str()).map_err(|e| format!("first message: {e}"))?;
        let kind = first.get("type").and_then(|t| t.as_str()).unwrap_or("");
        match (shared.protocol, kind) {
            (BotProtocol::Seed, "init") => {
                let id = match first.get("id") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => return Err("`init` without an `id`".to_owned()),
                };
                return Ok((ws, Bot::new(shared, index, decode, id, Vec::new())));
            }
            (BotProtocol::Json | BotProtocol::Bin, "welcome") => {
                let kinds = schema_kinds(&first)?;
                return Ok((ws, Bot::new(shared, index, decode, String::new(), kinds)));
            }
            (_, "error") => {
                shared.stats.borrow_mut().server_errors += 1;
                let msg = first.get("message").and_then(|m| m.as_str()).unwrap_or("");
                return Err(format!("server error: {msg}"));
            }
            _ => return Err(format!("unexpected first message of type `{kind}`")),
        }
    }
}

/// The field kinds a binary snapshot carries, from `welcome.schema`.
fn schema_kinds(welcome: &serde_json::Value) -> Result<Vec<FieldKind>, String> {
    let fields = welcome
        .pointer("/schema/fields")
        .and_then(|f| f.as_array())
        .ok_or("`welcome` without `schema.fields`")?;
    fields
        .iter()
        .map(|f| match f.get("kind").and_then(|k| k.as_str()) {
            Some("bool") => Ok(FieldKind::Bool),
            Some("int") => Ok(FieldKind::Int),
            Some("float") => Ok(FieldKind::Float),
            Some("str") => Ok(FieldKind::Str),
            other => Err(format!("unknown field kind {other:?} in `welcome.schema`")),
        })
        .collect()
}

/// A native input as JSON text.
#[derive(Serialize)]
struct JsonInput<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u32,
    input: &'a DotInput,
}

/// The parts of a native JSON snapshot a decoding bot reads (as a client
/// would: every entity's id and position).
#[derive(Deserialize)]
struct JsonSnapshot<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    tick: u64,
    #[serde(default)]
    ack: u32,
    #[serde(default, borrow)]
    state: BTreeMap<&'a str, Vec<JsonEntity>>,
}

#[derive(Deserialize)]
struct JsonEntity {
    #[allow(dead_code)] // parsed to cost what a client pays, not read
    id: u64,
    #[allow(dead_code)]
    x: f64,
    #[allow(dead_code)]
    y: f64,
}

/// A seed `state_update` as a decoding bot reads it.
#[derive(Deserialize)]
struct SeedUpdate<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    players: Vec<SeedPlayer<'a>>,
}

#[derive(Deserialize)]
struct SeedPlayer<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    x: f64,
    y: f64,
}

/// One bot's state between messages.
struct Bot {
    protocol: BotProtocol,
    /// Whether this bot decodes snapshots fully (see `--decode-clients`).
    decode: bool,
    rng: SmallRng,
    /// Index into [`DIRS8`] or [`SEED_MOVES`].
    dir: usize,
    turn_at: Instant,
    period: Duration,
    next_send: Instant,
    seq: u32,
    /// Inputs sent and not yet seen acknowledged (native: by `seq`; seed:
    /// moves not yet followed by a change of our position, `seq` 0).
    pending: VecDeque<(u32, Instant)>,
    last_snapshot: Option<Instant>,
    last_tick: Option<u64>,
    /// Binary protocol: the field kinds from `welcome`, and our copy of the state.
    kinds: Vec<FieldKind>,
    replica: Replica,
    /// Seed: our id, and our position in the last `state_update`.
    seed_id: String,
    seed_pos: Option<(f64, f64)>,
}

impl Bot {
    fn new(
        shared: &Shared,
        index: u32,
        decode: bool,
        seed_id: String,
        kinds: Vec<FieldKind>,
    ) -> Self {
        let mut rng = SmallRng::seed_from_u64(shared.seed ^ u64::from(index));
        let now = Instant::now();
        let dirs = if shared.protocol == BotProtocol::Seed {
            SEED_MOVES.len()
        } else {
            DIRS8.len()
        };
        let dir = rng.random_range(0..dirs);
        // Spread the first send over one period so the bots' inputs do not
        // all arrive in the same millisecond.
        let first = shared.move_period.mul_f64(rng.random_range(0.0..1.0));
        Bot {
            protocol: shared.protocol,
            decode,
            dir,
            turn_at: now + hold(&mut rng),
            rng,
            period: shared.move_period,
            next_send: now + first,
            seq: 0,
            pending: VecDeque::with_capacity(PENDING_MAX),
            last_snapshot: None,
            last_tick: None,
            kinds,
            replica: Replica::default(),
            seed_id,
            seed_pos: None,
        }
    }

    /// Plays until the run stops or the connection ends.
    async fn play(&mut self, shared: &Shared, ws: &mut Ws, leave_at: Option<Instant>) -> End {
        let cancelled = shared.stop.cancelled();
        tokio::pin!(cancelled);
        // Far away when there is no churn: one timer, never due.
        let leave = tokio::time::sleep_until(
            leave_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)),
        );
        tokio::pin!(leave);
        let send_timer = tokio::time::sleep_until(self.next_send);
        tokio::pin!(send_timer);
        loop {
            tokio::select! {
                // Stop first, then the input timer (due once a period, so it
                // cannot starve reading), then messages.
                biased;
                () = &mut cancelled => return End::Stopped,
                () = &mut leave => return End::Churned,
                () = &mut send_timer => {
                    let now = Instant::now();
                    let msg = self.next_input(shared, now);
                    match tokio::time::timeout(SEND_TIMEOUT, ws.send(msg)).await {
                        Ok(Ok(())) => {}
                        _ => return End::Lost,
                    }
                    send_timer.as_mut().reset(self.next_send);
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Binary(b))) => self.on_binary(shared, &b),
                    Some(Ok(Message::Text(t))) => self.on_text(shared, t.as_str()),
                    // Pings are answered by tungstenite as we keep reading;
                    // a close frame is followed by the end of the stream.
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return End::Lost,
                },
            }
        }
    }

    /// The input due now; schedules the next one.
    fn next_input(&mut self, shared: &Shared, now: Instant) -> Message {
        let in_window = inside(shared.window.get(), now);
        {
            let mut st = shared.stats.borrow_mut();
            if in_window {
                st.inputs_sent += 1;
                st.send_lag
                    .record(micros(now.saturating_duration_since(self.next_send)));
            }
        }
        if now >= self.turn_at {
            self.turn();
            self.turn_at = now + hold(&mut self.rng);
        }
        // Keep the cadence; after a stall, skip what was missed rather than
        // sending a burst no player would.
        self.next_send += self.period;
        if self.next_send <= now {
            self.next_send = now + self.period;
        }
        match self.protocol {
            BotProtocol::Seed => {
                if self.decode {
                    self.track(0, now);
                }
                Message::Text(Utf8Bytes::from_static(SEED_MOVES[self.dir % 4]))
            }
            BotProtocol::Json | BotProtocol::Bin => {
                self.seq = self.seq.wrapping_add(1);
                self.track(self.seq, now);
                let (x, y) = DIRS8[self.dir % 8];
                let input = DotInput::steer(x, y);
                if self.protocol == BotProtocol::Bin {
                    Message::Binary(bin::encode_input(self.seq, &input).into())
                } else {
                    let text = serde_json::to_string(&JsonInput {
                        kind: "input",
                        seq: self.seq,
                        input: &input,
                    })
                    .unwrap_or_default();
                    Message::Text(text.into())
                }
            }
        }
    }

    /// Picks another direction, as a player letting go of one key for another.
    fn turn(&mut self) {
        let n = if self.protocol == BotProtocol::Seed {
            SEED_MOVES.len()
        } else {
            DIRS8.len()
        };
        self.dir = (self.dir + self.rng.random_range(1..n)) % n;
        if self.protocol == BotProtocol::Seed {
            // Moves pushed against a wall never change our position; without
            // this, the first step after turning away would be credited to
            // them as a latency of up to a second and a half.
            self.pending.clear();
        }
    }

    fn track(&mut self, seq: u32, now: Instant) {
        if self.pending.len() >= PENDING_MAX {
            self.pending.pop_front();
        }
        self.pending.push_back((seq, now));
    }

    fn on_binary(&mut self, shared: &Shared, msg: &[u8]) {
        if self.protocol != BotProtocol::Bin {
            return;
        }
        let now = Instant::now();
        let window = shared.window.get();
        let in_window = inside(window, now);
        let mut st = shared.stats.borrow_mut();
        if in_window {
            st.bytes_in += msg.len() as u64;
        }
        let header = if self.decode {
            match self.replica.apply(msg, &self.kinds) {
                Ok(h) => {
                    if in_window && h.base != 0 {
                        count_records(&mut st, msg, &self.kinds);
                    }
                    Some(h)
                }
                Err(_) => {
                    st.decode_errors += 1;
                    // Still a snapshot: count it and take its ack.
                    read_header(&mut Reader::new(msg)).ok()
                }
            }
        } else {
            let h = read_header(&mut Reader::new(msg)).ok();
            if h.is_none() {
                st.decode_errors += 1;
            }
            h
        };
        if let Some(h) = header {
            self.on_snapshot(&mut st, now, window, msg.len(), Some(h.tick), Some(h.ack));
        }
    }

    fn on_text(&mut self, shared: &Shared, text: &str) {
        let now = Instant::now();
        let window = shared.window.get();
        let in_window = inside(window, now);
        let mut st = shared.stats.borrow_mut();
        if in_window {
            st.bytes_in += text.len() as u64;
        }
        match self.protocol {
            // Binary snapshots; text is `pong` or `error`.
            BotProtocol::Bin => {
                if is_error(text) {
                    st.server_errors += 1;
                }
            }
            BotProtocol::Json => {
                if self.decode {
                    match serde_json::from_str::<JsonSnapshot<'_>>(text) {
                        Ok(s) if s.kind == "snapshot" => {
                            // Every entity was parsed; that is the cost being simulated.
                            let _ = s.state.len();
                            self.on_snapshot(
                                &mut st,
                                now,
                                window,
                                text.len(),
                                Some(s.tick),
                                Some(s.ack),
                            );
                        }
                        Ok(s) if s.kind == "error" => st.server_errors += 1,
                        Ok(_) => {}
                        Err(_) => st.decode_errors += 1,
                    }
                } else if let Some(ack) = number_after(text, "\"ack\":") {
                    let tick = number_after(text, "\"tick\":");
                    let ack = u32::try_from(ack).ok();
                    self.on_snapshot(&mut st, now, window, text.len(), tick, ack);
                } else if is_error(text) {
                    st.server_errors += 1;
                }
            }
            BotProtocol::Seed => {
                if self.decode {
                    match serde_json::from_str::<SeedUpdate<'_>>(text) {
                        Ok(u) if u.kind == "state_update" => {
                            let me = u
                                .players
                                .iter()
                                .find(|p| p.id == self.seed_id)
                                .map(|p| (p.x, p.y));
                            let moved = matches!((self.seed_pos, me), (Some(a), Some(b)) if a != b);
                            self.seed_pos = me;
                            if moved {
                                // Every move sent before this update is answered by it.
                                for (_, sent) in self.pending.drain(..) {
                                    if in_window && inside(window, sent) {
                                        st.latency.record(micros(now - sent));
                                    }
                                }
                            }
                            self.on_snapshot(&mut st, now, window, text.len(), None, None);
                        }
                        Ok(u) if u.kind == "error" => st.server_errors += 1,
                        Ok(_) => {}
                        Err(_) => st.decode_errors += 1,
                    }
                } else if head_contains(text, "state_update") {
                    // `contains`: the Python seed writes `"type": "state_update"`
                    // with a space.
                    self.on_snapshot(&mut st, now, window, text.len(), None, None);
                } else if is_error(text) {
                    st.server_errors += 1;
                }
            }
        }
    }

    /// Counts one snapshot: its gap since the last, its tick, and the
    /// latency of every input its `ack` covers.
    fn on_snapshot(
        &mut self,
        st: &mut Stats,
        now: Instant,
        window: Option<(Instant, Instant)>,
        len: usize,
        tick: Option<u64>,
        ack: Option<u32>,
    ) {
        let in_window = inside(window, now);
        if in_window {
            st.updates += 1;
            st.snapshot_bytes += len as u64;
            if let Some(last) = self.last_snapshot {
                st.gaps.record(micros(now - last));
            }
            if let (Some(t), Some(last)) = (tick, self.last_tick) {
                st.ticks_missed += t.saturating_sub(last).saturating_sub(1);
            }
        }
        self.last_snapshot = Some(now);
        if tick.is_some() {
            self.last_tick = tick;
        }
        if let Some(ack) = ack {
            while let Some(&(seq, sent)) = self.pending.front() {
                // Serial-number order: survives `seq` wrapping past u32::MAX.
                if ack.wrapping_sub(seq) > u32::MAX / 2 {
                    break;
                }
                self.pending.pop_front();
                if in_window && inside(window, sent) {
                    st.latency.record(micros(now - sent));
                }
            }
        }
    }

    /// Notes a stall still open when the run ends in the maximum gap.
    fn finish(&self, shared: &Shared) {
        if let (Some(last), Some((start, end))) = (self.last_snapshot, shared.window.get()) {
            if last >= start && last < end {
                shared.stats.borrow_mut().gaps.note_max(micros(end - last));
            }
        }
    }
}

/// Whether `t` falls in the measuring window `[start, end)`.
fn inside(window: Option<(Instant, Instant)>, t: Instant) -> bool {
    window.is_some_and(|(start, end)| t >= start && t < end)
}

/// How long a direction is held: 0.5 to 1.5 s.
fn hold(rng: &mut SmallRng) -> Duration {
    Duration::from_secs_f64(rng.random_range(0.5..1.5))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Whether `needle` occurs near the start of `text`, where every server
/// message has its `type`; never scans a large snapshot.
fn head_contains(text: &str, needle: &str) -> bool {
    let head = &text.as_bytes()[..text.len().min(HEAD_BYTES)];
    head.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Whether a (small, non-snapshot) text message is an `error`. The whole
/// text is searched: the server writes `type` after `code` and `message`.
fn is_error(text: &str) -> bool {
    text.contains("\"type\":\"error\"")
}

/// The unsigned integer right after the first `key` in `text`: reads a
/// snapshot's `tick` or `ack` without parsing the state after them.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let rest = text.get(at..)?.trim_start();
    let end = rest
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    rest.get(..end)?.parse().ok()
}

/// Adds a binary delta's record bytes and record count (changed entities;
/// `RESET` markers are not entities) to the stats. Walks the records the way
/// [`Replica::apply`] does, but only to measure them.
fn count_records(st: &mut Stats, msg: &[u8], kinds: &[FieldKind]) {
    let mut r = Reader::new(msg);
    if read_header(&mut r).is_err() {
        return;
    }
    let bytes = r.rest().len();
    if let Some(n) = walk_records(r, kinds) {
        st.record_bytes += bytes as u64;
        st.records += n;
    }
}

fn walk_records(mut r: Reader<'_>, kinds: &[FieldKind]) -> Option<u64> {
    fn skip<'a>(r: &Reader<'a>, n: usize) -> Option<Reader<'a>> {
        r.rest().get(n..).map(Reader::new)
    }
    fn skip_value<'a>(mut r: Reader<'a>, kind: FieldKind) -> Option<Reader<'a>> {
        match kind {
            FieldKind::Bool => skip(&r, 1),
            FieldKind::Int => r.varint().ok().map(|_| r),
            FieldKind::Float => skip(&r, 4),
            FieldKind::Str => {
                let len = usize::try_from(r.varint().ok()?).ok()?;
                skip(&r, len)
            }
        }
    }
    let mut n = 0;
    while !r.is_empty() {
        let head = r.u8().ok()?;
        let (opc, gap) = (head >> 5, head & 0x1f);
        if opc == op::RESET {
            continue;
        }
        if gap == 31 {
            r.varint().ok()?;
        }
        r = match opc {
            op::MOVE => skip(&r, 2)?,
            op::MOVE_X | op::MOVE_Y => skip(&r, 1)?,
            op::DESPAWN => r,
            op::SPAWN => {
                r.zigzag().ok()?;
                r.zigzag().ok()?;
                for &k in kinds {
                    r = skip_value(r, k)?;
                }
                r
            }
            op::UPDATE => {
                let mask = r.varint().ok()?;
                if mask & 1 != 0 {
                    r.zigzag().ok()?;
                    r.zigzag().ok()?;
                }
                for (i, &k) in kinds.iter().enumerate() {
                    if mask & (1 << (i + 1)) != 0 {
                        r = skip_value(r, k)?;
                    }
                }
                r
            }
            _ => return None,
        };
        n += 1;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_after_keys() {
        let s = r#"{"type":"snapshot","tick":1234,"time":1.0,"ack":55,"state":{}}"#;
        assert_eq!(number_after(s, "\"tick\":"), Some(1234));
        assert_eq!(number_after(s, "\"ack\":"), Some(55));
        assert_eq!(number_after(r#"{"ack": 7}"#, "\"ack\":"), Some(7));
        assert_eq!(number_after(r#"{"type":"pong"}"#, "\"ack\":"), None);
        assert_eq!(number_after(r#"{"ack":"#, "\"ack\":"), None);
    }

    #[test]
    fn server_errors_are_recognised() {
        use crate::protocol::{encode, ErrorCode, ProtocolError};
        let e = encode::error(&ProtocolError {
            code: ErrorCode::RoomFull,
            message: "room `lobby` is full (64 players max); try again later".into(),
        });
        assert!(is_error(&e), "{e}");
        assert!(!is_error(r#"{"type":"pong","id":1,"server_time":1.0}"#));
    }

    #[test]
    fn head_only() {
        assert!(head_contains(
            r#"{"type": "state_update","players":[]}"#,
            "state_update"
        ));
        let far = format!("{}state_update", " ".repeat(100));
        assert!(!head_contains(&far, "state_update"));
        assert!(!head_contains("é", "state_update"));
    }

    #[test]
    fn records_are_counted() {
        let kinds = [FieldKind::Str];
        // MOVE_X id 1, RESET, SPAWN id 3 with "ab", DESPAWN id 4.
        let mut msg = Vec::new();
        bin::put_header(
            &mut msg,
            &bin::Header {
                tick: 2,
                ack: 0,
                base: 1,
                own: Some((1.0, 2.0)),
            },
        );
        let header = msg.len();
        msg.extend_from_slice(&[op::MOVE_X << 5 | 1, 8, op::RESET << 5]);
        msg.extend_from_slice(&[op::SPAWN << 5 | 3, 2, 4, 2, b'a', b'b', op::DESPAWN << 5]);
        let mut st = Stats::default();
        count_records(&mut st, &msg, &kinds);
        assert_eq!(st.records, 3);
        assert_eq!(st.record_bytes, (msg.len() - header) as u64);
        // A truncated record is not counted at all.
        let mut st = Stats::default();
        count_records(&mut st, &msg[..msg.len() - 3], &kinds);
        assert_eq!(st.records, 0);
    }
}
