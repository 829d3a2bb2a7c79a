//! What an operator can see: `GET /metrics` in the Prometheus (OpenMetrics)
//! text format.
//!
//! One registry per server (not a process-global recorder), so several
//! servers in one process, as in the tests, each report their own numbers.
//! Hot paths hold plain counter handles (an atomic add each); labelled
//! families are looked up once per session or room, never per message.
//! Every metric is listed, with what to alert on, in `docs/OPERATIONS.md`.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RefusedReason {
    server_full,
    per_ip,
    origin,
    room_full,
    too_many_rooms,
    invalid_room,
    bad_subprotocol,
    unsupported_protocol,
    invalid_query,
    shutting_down,
    resume_refused,
    room_failed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: RefusedReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoomLabel {
    pub room: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Every metric of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections_open: Gauge,
    addresses_at_limit: Gauge,
    pub connections_accepted: Counter,
    pub websockets_accepted: Counter,
    pub connections_refused: Family<ReasonLabel, Counter>,
    rooms: Gauge,
    players: Family<RoomLabel, Gauge>,
    players_suspended: Gauge,
    pub tick_seconds: Histogram,
    pub ticks_overrun: Counter,
    pub fanout_seconds: Histogram,
    pub messages_in: Family<ProtocolLabel, Counter>,
    pub bytes_in: Family<ProtocolLabel, Counter>,
    pub messages_out: Family<ProtocolLabel, Counter>,
    pub bytes_out: Family<ProtocolLabel, Counter>,
    pub snapshots_skipped: Counter,
    pub inputs_dropped: Counter,
    pub protocol_errors: Family<KindLabel, Counter>,
    pub resumes: Counter,
    /// Read from `/proc` at each scrape (Linux): memory and file descriptors,
    /// so leaks show over a soak.
    resident_memory_bytes: Gauge,
    open_fds: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("playfield");
        // 0.1 ms to ~0.4 s: a tick's budget is 4-1000 ms.
        let tick_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 13));
        let fanout_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 13));
        let m = Metrics {
            connections_open: Gauge::default(),
            addresses_at_limit: Gauge::default(),
            connections_accepted: Counter::default(),
            websockets_accepted: Counter::default(),
            connections_refused: Family::default(),
            rooms: Gauge::default(),
            players: Family::default(),
            players_suspended: Gauge::default(),
            tick_seconds,
            ticks_overrun: Counter::default(),
            fanout_seconds,
            messages_in: Family::default(),
            bytes_in: Family::default(),
            messages_out: Family::default(),
            bytes_out: Family::default(),
            snapshots_skipped: Counter::default(),
            inputs_dropped: Counter::default(),
            protocol_errors: Family::default(),
            resumes: Counter::default(),
            resident_memory_bytes: Gauge::default(),
            open_fds: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "connections_open",
            "TCP connections open now (HTTP and WebSocket), counted against --max-connections",
            m.connections_open.clone(),
        );
        r.register(
            "addresses_at_limit",
            "Client addresses (IPv6: /64 prefixes) holding --max-connections-per-ip connections now",
            m.addresses_at_limit.clone(),
        );
        r.register(
            "connections_accepted",
            "TCP connections admitted under the connection limits",
            m.connections_accepted.clone(),
        );
        r.register(
            "websockets_accepted",
            "WebSocket sessions that got a player (new or resumed)",
            m.websockets_accepted.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused, by reason",
            m.connections_refused.clone(),
        );
        r.register("rooms", "Rooms open now", m.rooms.clone());
        r.register(
            "players",
            "Players per room (suspended ones included)",
            m.players.clone(),
        );
        r.register(
            "players_suspended",
            "Players whose connection dropped, kept for --resume-grace to resume",
            m.players_suspended.clone(),
        );
        r.register(
            "tick_seconds",
            "Duration of one room tick (inputs, game tick, replication, cells)",
            m.tick_seconds.clone(),
        );
        r.register(
            "ticks_overrun",
            "Ticks that took longer than the tick interval",
            m.ticks_overrun.clone(),
        );
        r.register(
            "fanout_seconds",
            "Time from a tick's snapshot to its message being written to a client's socket",
            m.fanout_seconds.clone(),
        );
        r.register(
            "messages_in",
            "Client messages received",
            m.messages_in.clone(),
        );
        r.register(
            "bytes_in",
            "Client message payload bytes received",
            m.bytes_in.clone(),
        );
        r.register(
            "messages_out",
            "Messages sent to clients",
            m.messages_out.clone(),
        );
        r.register(
            "bytes_out",
            "Message payload bytes sent to clients",
            m.bytes_out.clone(),
        );
        r.register(
            "snapshots_skipped",
            "Snapshots a slow client never got (it was sent a newer one)",
            m.snapshots_skipped.clone(),
        );
        r.register(
            "inputs_dropped",
            "Inputs dropped because a player's input queue was full",
            m.inputs_dropped.clone(),
        );
        r.register(
            "protocol_errors",
            "Refused client messages and protocol violations, by kind",
            m.protocol_errors.clone(),
        );
        r.register(
            "resumes",
            "Players who reconnected with a resume token",
            m.resumes.clone(),
        );
        r.register(
            "resident_memory_bytes",
            "Resident memory of the server process (Linux)",
            m.resident_memory_bytes.clone(),
        );
        r.register(
            "open_fds",
            "Open file descriptors of the server process (Linux)",
            m.open_fds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition format. `now` carries the gauges that are read
    /// from the server's state at scrape time rather than kept up to date on
    /// every change (which would cost the hot paths for nothing).
    pub fn render(&self, now: &Now) -> String {
        self.connections_open
            .set(i64::try_from(now.connections_open).unwrap_or(i64::MAX));
        self.addresses_at_limit
            .set(i64::try_from(now.addresses_at_limit).unwrap_or(i64::MAX));
        self.players_suspended
            .set(i64::try_from(now.players_suspended).unwrap_or(i64::MAX));
        self.rooms
            .set(i64::try_from(now.rooms.len()).unwrap_or(i64::MAX));
        // Rooms come and go: only the ones open now are reported.
        self.players.clear();
        for (room, players) in &now.rooms {
            self.players
                .get_or_create(&RoomLabel { room: room.clone() })
                .set(i64::from(*players));
        }
        if let Some(rss) = resident_memory_bytes() {
            self.resident_memory_bytes.set(rss);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds
                .set(i64::try_from(dir.count()).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Counts a refusal.
    pub fn refused(&self, reason: RefusedReason) {
        self.connections_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a refused message or a protocol violation.
    pub fn protocol_error(&self, kind: &'static str) {
        self.protocol_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// The counters one session adds to on every message, looked up once.
    pub fn session_counters(&self, protocol: &'static str) -> SessionCounters {
        let l = ProtocolLabel { protocol };
        SessionCounters {
            messages_in: self.messages_in.get_or_create(&l).clone(),
            bytes_in: self.bytes_in.get_or_create(&l).clone(),
            messages_out: self.messages_out.get_or_create(&l).clone(),
            bytes_out: self.bytes_out.get_or_create(&l).clone(),
        }
    }
}

/// The server's state at scrape time.
#[derive(Debug, Default)]
pub struct Now {
    pub connections_open: usize,
    pub addresses_at_limit: usize,
    pub players_suspended: usize,
    /// Each open room's name and player count.
    pub rooms: Vec<(String, u32)>,
}

/// VmRSS of this process in bytes, from `/proc/self/status`.
fn resident_memory_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// A session's handles on the per-protocol message counters.
#[derive(Debug, Clone)]
pub struct SessionCounters {
    pub messages_in: Counter,
    pub bytes_in: Counter,
    pub messages_out: Counter,
    pub bytes_out: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_its_labels() {
        let m = Metrics::new();
        m.refused(RefusedReason::per_ip);
        m.protocol_error("invalid_json");
        m.session_counters("playfield.v1.bin").bytes_out.inc_by(10);
        m.tick_seconds.observe(0.002);
        let mut now = Now {
            connections_open: 4,
            rooms: vec![("lobby".into(), 3), ("gone".into(), 1)],
            ..Now::default()
        };
        m.render(&now);
        now.rooms.pop();
        let text = m.render(&now);
        assert!(
            !text.contains("gone"),
            "a closed room is still listed:\n{text}"
        );
        for needle in [
            "playfield_connections_refused_total{reason=\"per_ip\"} 1",
            "playfield_protocol_errors_total{kind=\"invalid_json\"} 1",
            "playfield_players{room=\"lobby\"} 3",
            "playfield_rooms 1",
            "playfield_connections_open 4",
            "playfield_bytes_out_total{protocol=\"playfield.v1.bin\"} 10",
            "playfield_tick_seconds_count 1",
            "playfield_resumes_total 0",
            "playfield_open_fds ",
            "playfield_resident_memory_bytes ",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }
}
