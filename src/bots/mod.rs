//! `playfield bots`: a load generator that plays the game over real
//! WebSockets and measures what players would feel: snapshot rate, gaps
//! between snapshots, input latency and bandwidth.
//!
//! It is built to be cheap so that one core of bots can load a server hard:
//! every bot runs on one thread (a `current_thread` runtime, so there are no
//! locks and the benchmark can pin the bots to a core of their own),
//! statistics go into shared counters and histograms instead of per-sample
//! vectors, and `--decode-clients` lets most bots read only a snapshot's
//! header while a few decode everything as a real client does.
//!
//! A run: bots connect at `--connect-rate`; once all have connected (or
//! failed) and `--warmup` has passed, the measuring window opens for
//! `--duration` seconds, marked by `BOTS_WINDOW_START` and `BOTS_WINDOW_END`
//! lines on stderr so that a script can sample the server between them. Then
//! every bot closes its socket and the last line on stdout is one JSON
//! object, the [`Report`]. Every wait is bounded, so a run always ends.

mod client;
mod soak;
mod stats;

use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

use crate::protocol::{NATIVE_BIN_V1, NATIVE_JSON_V1};
use stats::Stats;

/// How long the bots wait for every connection to succeed or fail after the
/// last one was started (each bot also gives up on its own after 10 s).
const SETTLE_GRACE: Duration = Duration::from_secs(12);
/// How long the bots take to close their sockets at the end.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// Connection failures described on stderr; the rest are only counted.
const FAILURES_SHOWN: u32 = 5;

/// Which protocol the bots speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BotProtocol {
    /// The seed's JSON (`move` / `state_update`), no subprotocol: also
    /// measures the seed's own Python server.
    Seed,
    /// Native protocol, JSON text (`playfield.v1.json`).
    Json,
    /// Native protocol, binary snapshots and inputs (`playfield.v1.bin`).
    Bin,
}

impl BotProtocol {
    fn name(self) -> &'static str {
        match self {
            BotProtocol::Seed => "seed",
            BotProtocol::Json => "json",
            BotProtocol::Bin => "bin",
        }
    }

    fn subprotocol(self) -> Option<&'static str> {
        match self {
            BotProtocol::Seed => None,
            BotProtocol::Json => Some(NATIVE_JSON_V1),
            BotProtocol::Bin => Some(NATIVE_BIN_V1),
        }
    }
}

/// Settings of one bots run.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "bots",
    about = "Load generator: N bots play over real WebSockets; prints one JSON line of measurements"
)]
pub struct Args {
    /// WebSocket URL to connect to; `?room=NAME` puts the bots in a room.
    #[arg(long, default_value = "ws://127.0.0.1:8765/")]
    pub url: String,

    /// Bots to connect.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub clients: u32,

    /// Seconds to measure, once every bot has connected and warmed up.
    #[arg(long, default_value = "10", value_parser = parse_duration)]
    pub duration: Duration,

    /// Seconds between the last connection and the start of measuring.
    #[arg(long, default_value = "2", value_parser = parse_warmup)]
    pub warmup: Duration,

    /// Protocol the bots speak.
    #[arg(long, value_enum, default_value_t = BotProtocol::Bin)]
    pub protocol: BotProtocol,

    /// Inputs (seed: moves) each bot sends per second.
    #[arg(long, default_value_t = 20.0, value_parser = parse_rate)]
    pub move_hz: f64,

    /// New connections started per second.
    #[arg(long, default_value_t = 500.0, value_parser = parse_rate)]
    pub connect_rate: f64,

    /// Bots that fully decode every snapshot (binary: apply it to a replica;
    /// JSON and seed: parse it); the others read only the header (tick and
    /// ack) or, on seed, only count it. Default: all. Seed latency needs
    /// decoding bots.
    #[arg(long)]
    pub decode_clients: Option<u32>,

    /// Connections closed and reopened per second over all bots (a soak's
    /// connect/disconnect churn): each bot leaves after a random lifetime
    /// averaging clients/churn seconds and reconnects as a new player.
    #[arg(long, default_value_t = 0.0, value_parser = parse_churn)]
    pub churn: f64,

    /// Measure for this many minutes (a soak) instead of `--duration`.
    #[arg(long, value_parser = parse_minutes)]
    pub minutes: Option<f64>,

    /// Every this many seconds, print one JSON line with the server's own
    /// numbers (from `GET /rooms` and `GET /metrics` on the same host):
    /// tick overruns, skipped snapshots, memory, open files. Default: every
    /// 10 s with `--minutes`, never otherwise.
    #[arg(long, value_parser = parse_duration)]
    pub report_every: Option<Duration>,
}

impl Args {
    /// Settings for a run from code (tests): everything else at its default.
    pub fn new(url: impl Into<String>, protocol: BotProtocol, clients: u32) -> Self {
        use clap::Parser;
        // Parsing an empty command line cannot fail: every field has a default.
        let mut args = Args::parse_from(["bots"]);
        args.url = url.into();
        args.protocol = protocol;
        args.clients = clients;
        args
    }
}

fn parse_secs(s: &str, min: f64) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds (e.g. 10 or 0.5)"))?;
    if !(min..=86_400.0).contains(&secs) {
        return Err(format!(
            "{secs} s is out of range: use {min} to 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_secs(s, 0.1)
}

fn parse_warmup(s: &str) -> Result<Duration, String> {
    parse_secs(s, 0.0)
}

fn parse_churn(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of reconnects per second"))?;
    if !(0.0..=100_000.0).contains(&v) {
        return Err(format!("{v} is out of range: use 0 to 100000 per second"));
    }
    Ok(v)
}

fn parse_minutes(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of minutes"))?;
    if !(0.05..=1440.0).contains(&v) {
        return Err(format!("{v} min is out of range: use 0.05 to 1440 minutes"));
    }
    Ok(v)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number per second"))?;
    if !(0.1..=1_000_000.0).contains(&r) {
        return Err(format!(
            "{r} is out of range: use 0.1 to 1000000 per second"
        ));
    }
    Ok(r)
}

/// What every bot shares. The bots all run on one thread, so plain `Cell`s
/// and a `RefCell` do, with no atomics or locks.
struct Shared {
    url: String,
    protocol: BotProtocol,
    decode_clients: u32,
    move_period: Duration,
    seed: u64,
    /// Cancelled when the window ends (or the run gives up): every bot stops.
    stop: CancellationToken,
    /// `[start, end)` of the measuring window, once it is known.
    window: Cell<Option<(Instant, Instant)>>,
    /// When the bots must be done closing.
    shutdown_at: Cell<Option<Instant>>,
    connected: Cell<u32>,
    failed: Cell<u32>,
    open: Cell<u32>,
    /// Average time a bot stays before it leaves and reconnects (`--churn`).
    lifetime: Option<Duration>,
    /// Connections closed and reopened by churn.
    reconnects: Cell<u64>,
    stats: RefCell<Stats>,
}

impl Shared {
    fn connect_failed(&self, index: u32, why: &str) {
        let failed = self.failed.get() + 1;
        self.failed.set(failed);
        {
            let mut st = self.stats.borrow_mut();
            st.disconnects += 1;
            st.connect_failures += 1;
        }
        if failed <= FAILURES_SHOWN {
            eprintln!("bots: bot {index} could not connect: {why}");
        } else if failed == FAILURES_SHOWN + 1 {
            eprintln!("bots: more connection failures; counting only");
        }
    }

    fn shutdown_deadline(&self) -> Instant {
        self.shutdown_at
            .get()
            .unwrap_or_else(|| Instant::now() + SHUTDOWN_TIMEOUT)
    }
}

/// The measurements of one run: the JSON line the bots print last.
///
/// Rates are per second of the measuring window; `None` (JSON `null`) means
/// there was nothing to measure (e.g. latency of seed bots that do not decode).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub protocol: BotProtocol,
    pub url: String,
    pub clients_requested: u32,
    /// Bots that got `welcome` (native) or `init` (seed).
    pub clients_connected: u32,
    /// Bots still connected when the window ended.
    pub clients_open_at_end: u32,
    pub decode_clients: u32,
    /// Seconds from the first connection attempt until all had settled.
    pub connect_s: f64,
    pub warmup_s: f64,
    /// Length of the measuring window actually run.
    pub duration_s: f64,
    pub move_hz: f64,
    /// Snapshots (seed: `state_update`s) per connected bot per second.
    pub updates_per_client_per_s: f64,
    /// Time between consecutive snapshots at one bot, over all bots.
    pub gap_ms_p50: Option<f64>,
    pub gap_ms_p99: Option<f64>,
    /// Includes a stall still open when the window closed.
    pub gap_ms_max: Option<f64>,
    /// Native: input sent to the first snapshot acknowledging it (`ack >=
    /// seq`), all bots. Seed: move sent to the first `state_update` in which
    /// the bot's own position changed, decoding bots only.
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_ms_max: Option<f64>,
    pub latency_samples: u64,
    /// Average size of a snapshot message.
    pub bytes_per_update: Option<f64>,
    /// Bytes received by all bots together per second (text and binary
    /// messages, without WebSocket framing).
    pub bytes_in_per_s: f64,
    /// Binary only: delta record bytes divided by the entities those records
    /// changed, as seen by decoding bots.
    pub bytes_per_moving_entity: Option<f64>,
    /// Ticks the bots never saw (tick numbers skipped), as a share of
    /// snapshots plus skipped ticks; native only.
    pub ticks_missed_ratio: Option<f64>,
    pub inputs_per_client_per_s: f64,
    /// How late inputs left after they were due (99th percentile): more
    /// than a few ms means the bots' own core is not keeping up.
    pub send_lag_ms_p99: Option<f64>,
    /// CPU the bots used during the window, in percent of one core (Linux).
    pub bots_cpu_percent: Option<f64>,
    /// Whether the bots themselves kept pace: at least 90 % of the inputs
    /// they should have sent, and 99 % of them less than one input period
    /// late. When false, the bots' core was the bottleneck: they read
    /// snapshots in bursts, so gaps and latency describe the bots, not the
    /// server.
    pub bots_kept_up: bool,
    /// Connection failures plus connections the server closed or lost.
    pub disconnects: u64,
    pub connect_failures: u64,
    pub decode_errors: u64,
    pub server_errors: u64,
    /// Connections closed and reopened by `--churn`.
    pub reconnects: u64,
}

/// Runs the bots from the command line: a `current_thread` runtime, the JSON
/// report as the last stdout line, failure if no bot connected.
pub fn main(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bots: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(run(args));
    match serde_json::to_string(&report) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("bots: cannot write the report: {e}"),
    }
    if report.clients_connected == 0 {
        eprintln!("bots: no bot connected");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// One run of the bots; returns when every bot has stopped (bounded by
/// timeouts). The bots are local tasks: call this on a `current_thread`
/// runtime to keep them on one thread (on a multi-thread runtime they still
/// all run on the calling thread).
pub async fn run(args: Args) -> Report {
    tokio::task::LocalSet::new()
        .run_until(coordinate(args))
        .await
}

async fn coordinate(args: Args) -> Report {
    let shared = Rc::new(Shared {
        url: args.url.clone(),
        protocol: args.protocol,
        decode_clients: args
            .decode_clients
            .unwrap_or(args.clients)
            .min(args.clients),
        move_period: Duration::from_secs_f64(1.0 / args.move_hz),
        seed: 0x5EED_B075,
        stop: CancellationToken::new(),
        window: Cell::new(None),
        shutdown_at: Cell::new(None),
        connected: Cell::new(0),
        failed: Cell::new(0),
        open: Cell::new(0),
        lifetime: (args.churn > 0.0)
            .then(|| Duration::from_secs_f64(f64::from(args.clients) / args.churn)),
        reconnects: Cell::new(0),
        stats: RefCell::new(Stats::default()),
    });
    let duration = args
        .minutes
        .map_or(args.duration, |m| Duration::from_secs_f64(m * 60.0));
    let report_every = args
        .report_every
        .or_else(|| args.minutes.map(|_| Duration::from_secs(10)));
    let t0 = Instant::now();
    let mut report = empty_report(&args, shared.decode_clients);
    if let Err(e) = args.url.as_str().into_client_request() {
        eprintln!("bots: cannot use --url {}: {e}", args.url);
        let mut st = shared.stats.borrow_mut();
        st.disconnects = u64::from(args.clients);
        st.connect_failures = u64::from(args.clients);
        fill_report(&mut report, &st, 0, 0, 0.0, None);
        return report;
    }
    eprintln!(
        "bots: connecting {} {} bots to {} at {}/s",
        args.clients,
        args.protocol.name(),
        args.url,
        args.connect_rate
    );

    // Start connections at the requested rate.
    let mut handles = Vec::with_capacity(args.clients as usize);
    let spacing = Duration::from_secs_f64(1.0 / args.connect_rate);
    let mut next_progress = t0 + Duration::from_secs(1);
    for i in 0..args.clients {
        let due = t0 + spacing.mul_f64(f64::from(i));
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        handles.push(tokio::task::spawn_local(client::run(Rc::clone(&shared), i)));
        if Instant::now() >= next_progress {
            progress_connect(&shared, args.clients);
            next_progress += Duration::from_secs(1);
        }
    }
    // Wait until every bot has connected or failed (each one gives up by
    // itself after its own timeout; this only bounds the wait).
    let settle_by = Instant::now() + SETTLE_GRACE;
    while shared.connected.get() + shared.failed.get() < args.clients && Instant::now() < settle_by
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if Instant::now() >= next_progress {
            progress_connect(&shared, args.clients);
            next_progress += Duration::from_secs(1);
        }
    }
    let connect_s = t0.elapsed().as_secs_f64();
    progress_connect(&shared, args.clients);

    let mut cpu_percent = None;
    let mut window_s = 0.0;
    if shared.connected.get() > 0 {
        tokio::time::sleep(args.warmup).await;
        let start = Instant::now();
        let end = start + duration;
        let mut next_report = report_every.map(|every| start + every);
        shared.window.set(Some((start, end)));
        let cpu0 = cpu_seconds();
        eprintln!("BOTS_WINDOW_START");
        let mut last_updates = 0;
        let mut tick = start;
        while Instant::now() < end {
            tick = (tick + Duration::from_secs(1)).min(end);
            tokio::time::sleep_until(tick).await;
            let updates = shared.stats.borrow().updates;
            let open = shared.open.get().max(1);
            eprintln!(
                "bots: {:.0}/{:.0} s, {} open, {:.1} updates per bot in the last second",
                (tick - start).as_secs_f64(),
                duration.as_secs_f64(),
                shared.open.get(),
                (updates - last_updates) as f64 / f64::from(open)
            );
            last_updates = updates;
            if let (Some(due), Some(every)) = (next_report, report_every) {
                if tick >= due {
                    next_report = Some(due + every);
                    let server = soak::scrape(&args.url).await;
                    let line = serde_json::json!({
                        "t_s": round((tick - start).as_secs_f64(), 1),
                        "bots_open": shared.open.get(),
                        "reconnects": shared.reconnects.get(),
                        "disconnects": shared.stats.borrow().disconnects,
                        "server": server,
                    });
                    println!("{line}");
                }
            }
        }
        let cpu1 = cpu_seconds();
        eprintln!("BOTS_WINDOW_END");
        window_s = (Instant::now() - start).as_secs_f64();
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            cpu_percent = Some(100.0 * (b - a) / window_s.max(1e-9));
        }
    } else {
        eprintln!("bots: no bot connected; not measuring");
    }
    let open_at_end = shared.open.get();

    // Everyone closes; wait for that, within bounds.
    let shutdown_at = Instant::now() + SHUTDOWN_TIMEOUT;
    shared.shutdown_at.set(Some(shutdown_at));
    shared.stop.cancel();
    let grace = shutdown_at + Duration::from_secs(1);
    for h in &mut handles {
        if tokio::time::timeout_at(grace, &mut *h).await.is_err() {
            break;
        }
    }
    for h in &handles {
        h.abort();
    }

    let st = shared.stats.borrow();
    report.connect_s = round(connect_s, 2);
    report.reconnects = shared.reconnects.get();
    fill_report(
        &mut report,
        &st,
        shared.connected.get(),
        open_at_end,
        window_s,
        cpu_percent,
    );
    report
}

fn progress_connect(shared: &Shared, total: u32) {
    eprintln!(
        "bots: {}/{} connected, {} failed",
        shared.connected.get(),
        total,
        shared.failed.get()
    );
}

fn empty_report(args: &Args, decode_clients: u32) -> Report {
    Report {
        protocol: args.protocol,
        url: args.url.clone(),
        clients_requested: args.clients,
        clients_connected: 0,
        clients_open_at_end: 0,
        decode_clients,
        connect_s: 0.0,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: 0.0,
        move_hz: args.move_hz,
        updates_per_client_per_s: 0.0,
        gap_ms_p50: None,
        gap_ms_p99: None,
        gap_ms_max: None,
        latency_ms_p50: None,
        latency_ms_p99: None,
        latency_ms_max: None,
        latency_samples: 0,
        bytes_per_update: None,
        bytes_in_per_s: 0.0,
        bytes_per_moving_entity: None,
        ticks_missed_ratio: None,
        inputs_per_client_per_s: 0.0,
        send_lag_ms_p99: None,
        bots_cpu_percent: None,
        bots_kept_up: false,
        disconnects: 0,
        connect_failures: 0,
        decode_errors: 0,
        server_errors: 0,
        reconnects: 0,
    }
}

fn fill_report(
    r: &mut Report,
    st: &Stats,
    connected: u32,
    open_at_end: u32,
    window_s: f64,
    cpu_percent: Option<f64>,
) {
    let per = |v: f64| {
        if connected == 0 || window_s <= 0.0 {
            0.0
        } else {
            v / f64::from(connected) / window_s
        }
    };
    let ms = |v: Option<f64>| v.map(|v| round(v, 2));
    r.clients_connected = connected;
    r.clients_open_at_end = open_at_end;
    r.duration_s = round(window_s, 3);
    r.updates_per_client_per_s = round(per(st.updates as f64), 2);
    r.gap_ms_p50 = ms(st.gaps.quantile_ms(0.5));
    r.gap_ms_p99 = ms(st.gaps.quantile_ms(0.99));
    r.gap_ms_max = ms(st.gaps.max_ms());
    r.latency_ms_p50 = ms(st.latency.quantile_ms(0.5));
    r.latency_ms_p99 = ms(st.latency.quantile_ms(0.99));
    r.latency_ms_max = ms(st.latency.max_ms());
    r.latency_samples = st.latency.count();
    r.bytes_per_update =
        (st.updates > 0).then(|| round(st.snapshot_bytes as f64 / st.updates as f64, 1));
    r.bytes_in_per_s = if window_s > 0.0 {
        (st.bytes_in as f64 / window_s).round()
    } else {
        0.0
    };
    r.bytes_per_moving_entity =
        (st.records > 0).then(|| round(st.record_bytes as f64 / st.records as f64, 3));
    r.ticks_missed_ratio = (r.protocol != BotProtocol::Seed && st.updates > 0).then(|| {
        round(
            st.ticks_missed as f64 / (st.updates + st.ticks_missed) as f64,
            4,
        )
    });
    r.inputs_per_client_per_s = round(per(st.inputs_sent as f64), 2);
    r.send_lag_ms_p99 = ms(st.send_lag.quantile_ms(0.99));
    r.bots_cpu_percent = cpu_percent.map(|c| round(c, 1));
    let period_ms = 1000.0 / r.move_hz;
    r.bots_kept_up = connected > 0
        && per(st.inputs_sent as f64) >= 0.9 * r.move_hz
        && st.send_lag.quantile_ms(0.99).is_some_and(|l| l < period_ms);
    r.disconnects = st.disconnects;
    r.connect_failures = st.connect_failures;
    r.decode_errors = st.decode_errors;
    r.server_errors = st.server_errors;
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// CPU time this process has used, in seconds, from `/proc/self/stat`
/// (user + system, in clock ticks of 1/100 s, the value of `CLK_TCK` on
/// every Linux architecture we run on). `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(cpu_seconds().is_some());
        }
    }

    #[test]
    fn args_defaults_and_limits() {
        use clap::Parser;
        let a = Args::parse_from(["bots"]);
        assert_eq!(a.protocol, BotProtocol::Bin);
        assert_eq!(a.warmup, Duration::from_secs(2));
        assert!(Args::try_parse_from(["bots", "--duration", "0"]).is_err());
        assert!(Args::try_parse_from(["bots", "--move-hz", "0"]).is_err());
        let a = Args::parse_from(["bots", "--protocol", "seed", "--warmup", "0"]);
        assert_eq!(a.protocol, BotProtocol::Seed);
        assert_eq!(a.warmup, Duration::ZERO);
    }
}
