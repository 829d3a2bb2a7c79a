//! Server settings: every limit lives here, each with a flag, an environment
//! variable and a default that is safe on a small machine.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Settings for one Playfield server, read from flags or the environment.
///
/// Every network-facing limit is configurable so that operators can tighten it,
/// and every default is small enough that one hostile client cannot exhaust
/// memory or CPU.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "playfield",
    version,
    about = "Authoritative multiplayer game server"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8765)]
    pub port: u16,

    /// Simulation ticks per second in every room.
    #[arg(long, env = "PLAYFIELD_TICK_RATE", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=240))]
    pub tick_rate: u32,

    /// Players per room; a full room refuses newcomers (close 1013).
    #[arg(long, env = "PLAYFIELD_ROOM_CAPACITY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub room_capacity: u32,

    /// Most rooms that may exist at once.
    #[arg(long, env = "PLAYFIELD_MAX_ROOMS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rooms: u32,

    /// Most connections at once: every TCP connection counts, plain HTTP
    /// as well as WebSocket (and each further WebSocket on an HTTP/2
    /// connection). More are refused at once: a WebSocket client with an
    /// `error` and close 1013 while refusal slots last, otherwise HTTP 503.
    #[arg(long, env = "PLAYFIELD_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Most connections at once from one IP address (IPv6: one /64), counted
    /// like `--max-connections`; 0 means no per-address limit. Addresses in
    /// `--per-ip-exempt` are not limited.
    #[arg(long, env = "PLAYFIELD_MAX_CONNECTIONS_PER_IP", default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_connections_per_ip: u32,

    /// Addresses (comma-separated IPs or CIDR blocks) that
    /// `--max-connections-per-ip` does not apply to; `none` for none. The
    /// default exempts loopback, where a reverse proxy on the same host
    /// connects from: every player would share its address.
    #[arg(long, env = "PLAYFIELD_PER_IP_EXEMPT", default_value = "127.0.0.0/8,::1", value_parser = IpNets::parse)]
    pub per_ip_exempt: IpNets,

    /// Origins allowed to open a WebSocket (comma-separated, exact, e.g.
    /// `https://game.example,http://localhost:8765`; `null` for pages opened
    /// from a file); `*` allows any. Clients that send no `Origin` (bots,
    /// servers) are always allowed.
    #[arg(long, env = "PLAYFIELD_ALLOWED_ORIGINS", default_value = "*", value_parser = AllowedOrigins::parse)]
    pub allowed_origins: AllowedOrigins,

    /// TLS certificate chain (PEM file, the server's certificate first):
    /// serves https:// and wss:// on the same port. Needs `--tls-key`.
    #[arg(
        long,
        env = "PLAYFIELD_TLS_CERT",
        requires = "tls_key",
        value_name = "PEM_FILE"
    )]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM file: PKCS#8, RSA or SEC1 EC) for `--tls-cert`.
    #[arg(
        long,
        env = "PLAYFIELD_TLS_KEY",
        requires = "tls_cert",
        value_name = "PEM_FILE"
    )]
    pub tls_key: Option<PathBuf>,

    /// Largest client message in bytes; larger ones close the connection (1009).
    #[arg(long, env = "PLAYFIELD_MAX_MESSAGE_BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub max_message_bytes: u32,

    /// Unapplied inputs kept per player; the room applies one per tick and
    /// drops what overflows, so flooding gains no speed.
    #[arg(long, env = "PLAYFIELD_INPUT_BUFFER", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub input_buffer: u32,

    /// Messages per second one connection may send (a token bucket that
    /// refills at this rate); the excess is dropped, and a client over it
    /// for 5 s is closed (1008). Default: 60, or twice `--tick-rate` if
    /// that is more (native clients send one input per tick).
    #[arg(long, env = "PLAYFIELD_MAX_MESSAGES_PER_SEC", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_messages_per_sec: Option<u32>,

    /// Messages one connection may send at once above its rate (the token
    /// bucket's size); also the most read from one connection per tick.
    #[arg(long, env = "PLAYFIELD_MESSAGE_BURST", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub message_burst: u32,

    /// Seconds between WebSocket pings sent to each client.
    #[arg(long, env = "PLAYFIELD_PING_INTERVAL", default_value = "5", value_parser = parse_secs)]
    pub ping_interval: Duration,

    /// Seconds without a pong from a client before it is dropped (at least
    /// twice the ping interval). Only pongs count: a client that keeps
    /// sending but never reads does not answer pings either.
    #[arg(long, env = "PLAYFIELD_IDLE_TIMEOUT", default_value = "20", value_parser = parse_secs)]
    pub idle_timeout: Duration,

    /// Seconds one outgoing message may wait on a client that does not read
    /// before that client is dropped.
    #[arg(long, env = "PLAYFIELD_SEND_TIMEOUT", default_value = "5", value_parser = parse_secs)]
    pub send_timeout: Duration,

    /// Seconds a player whose connection drops is kept in its room, for its
    /// client to reconnect with `?resume=TOKEN` and get it back. 0 turns
    /// resuming off: players leave as soon as their connection drops.
    #[arg(long, env = "PLAYFIELD_RESUME_GRACE", default_value = "10", value_parser = parse_grace)]
    pub resume_grace: Duration,

    /// Worker threads; 0 means one per core this process may run on. With
    /// one, the server runs on a single-threaded runtime.
    #[arg(long, env = "PLAYFIELD_THREADS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub threads: u32,

    /// Side of the square world in px. Larger than `--view-size`, each client
    /// only receives what is around its own dot.
    #[arg(long, env = "PLAYFIELD_WORLD_SIZE", default_value_t = 500.0, value_parser = parse_size)]
    pub world_size: f64,

    /// Side of the square each client sees around its dot, in px. At least
    /// `--world-size` (the default) means everyone sees everything.
    #[arg(long, env = "PLAYFIELD_VIEW_SIZE", default_value_t = 500.0, value_parser = parse_size)]
    pub view_size: f64,

    /// Room for clients that do not ask for one with `?room=`.
    #[arg(long, env = "PLAYFIELD_DEFAULT_ROOM", default_value = "lobby", value_parser = parse_room_arg)]
    pub default_room: String,

    /// Seconds a client may take to send its HTTP request headers (including
    /// the WebSocket handshake and the TLS handshake) before the connection
    /// is closed; also how long a connection may stay open without a request
    /// in progress (HTTP/1.1 keep-alive and HTTP/2 alike).
    #[arg(long, env = "PLAYFIELD_HEADER_TIMEOUT", default_value = "10", value_parser = parse_secs)]
    pub header_timeout: Duration,

    /// Seconds to wait for clients to close on shutdown before exiting anyway.
    #[arg(long, env = "PLAYFIELD_SHUTDOWN_GRACE", default_value = "3", value_parser = parse_secs)]
    pub shutdown_grace: Duration,
}

impl Config {
    /// The defaults, as if started with no flags and no environment.
    /// Tests start from this and change what they exercise.
    pub fn for_tests() -> Self {
        // Parsing an empty command line cannot fail: every field has a default.
        let mut config = Config::parse_from(["playfield"]);
        config.host = IpAddr::from([127, 0, 0, 1]);
        config.port = 0;
        config
    }

    /// Checks settings that depend on each other; clap checks each one alone.
    pub fn validate(&self) -> Result<(), String> {
        if self.message_rate() <= self.tick_rate {
            return Err(format!(
                "--max-messages-per-sec ({}) must be more than --tick-rate ({}): native clients send one input per tick, plus pings",
                self.message_rate(),
                self.tick_rate
            ));
        }
        if self.idle_timeout < self.ping_interval * 2 {
            return Err(format!(
                "--idle-timeout ({} s) must be at least twice --ping-interval ({} s): clients are dropped when no pong arrives within the idle timeout, so every client would be dropped between pings",
                self.idle_timeout.as_secs_f64(),
                self.ping_interval.as_secs_f64()
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err("--tls-cert needs --tls-key (PLAYFIELD_TLS_KEY): give both to serve https:// and wss://, or neither for plain http://".into())
            }
            (None, Some(_)) => {
                return Err("--tls-key needs --tls-cert (PLAYFIELD_TLS_CERT): give both to serve https:// and wss://, or neither for plain http://".into())
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the server speaks TLS (https://, wss://).
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// Messages per second one connection may send: `--max-messages-per-sec`,
    /// or by default 60 or twice the tick rate, whichever is more.
    pub fn message_rate(&self) -> u32 {
        self.max_messages_per_sec
            .unwrap_or_else(|| self.tick_rate.saturating_mul(2).max(60))
    }

    /// Length of one tick.
    pub fn tick_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.tick_rate))
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds (e.g. 5 or 0.5)"))?;
    if !(0.01..=86_400.0).contains(&secs) {
        return Err(format!(
            "{secs} s is out of range: use 0.01 to 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Like [`parse_secs`], but 0 (off) is allowed.
fn parse_grace(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(0.0) => Ok(Duration::ZERO),
        _ => parse_secs(s),
    }
}

fn parse_size(s: &str) -> Result<f64, String> {
    let px: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a size in px (e.g. 500 or 10000)"))?;
    if !(100.0..=1_000_000.0).contains(&px) {
        return Err(format!("{px} px is out of range: use 100 to 1000000 px"));
    }
    Ok(px)
}

fn parse_room_arg(s: &str) -> Result<String, String> {
    crate::room::validate_room_name(s).map(str::to_owned)
}

/// `--allowed-origins`: the `Origin`s that may open a WebSocket, or any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    /// `None`: any origin. Otherwise lower-cased origins, compared exactly.
    list: Option<Vec<String>>,
}

impl AllowedOrigins {
    /// Any origin (the default).
    pub fn any() -> Self {
        AllowedOrigins { list: None }
    }

    /// Parses a comma-separated list: `*` (any), or origins
    /// (`scheme://host[:port]`) and `null`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let items: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .collect();
        if items.is_empty() || items == ["*"] {
            return Ok(AllowedOrigins::any());
        }
        let mut list = Vec::with_capacity(items.len());
        for item in items {
            if item == "*" {
                return Err("`*` allows any origin: give it alone, not in a list".into());
            }
            check_origin(item)?;
            list.push(item.to_ascii_lowercase());
        }
        Ok(AllowedOrigins { list: Some(list) })
    }

    /// True when every origin is allowed.
    pub fn is_any(&self) -> bool {
        self.list.is_none()
    }

    /// Whether a request's `Origin` header value is allowed. Scheme and host
    /// are case-insensitive (RFC 6454), so the comparison is too; there are
    /// no wildcards and no suffix matches.
    pub fn allows(&self, origin: &[u8]) -> bool {
        match &self.list {
            None => true,
            Some(list) => list
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin)),
        }
    }
}

impl std::fmt::Display for AllowedOrigins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.list {
            None => f.write_str("*"),
            Some(list) => f.write_str(&list.join(",")),
        }
    }
}

/// Checks that `item` is what a browser sends as `Origin`: `null`, or
/// `scheme://host[:port]` with nothing after it. A path or a trailing slash
/// would never match, so it is an error rather than a silent no-op.
fn check_origin(item: &str) -> Result<(), String> {
    if item == "null" {
        return Ok(());
    }
    let example = "an origin is scheme://host[:port] with no path, e.g. https://game.example or http://localhost:8765 (or `null` for pages opened from a file)";
    let Some((scheme, rest)) = item.split_once("://") else {
        return Err(format!("`{item}` is not an origin: {example}"));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(format!("`{item}` has an invalid scheme: {example}"));
    }
    if rest.is_empty() {
        return Err(format!("`{item}` has no host: {example}"));
    }
    if let Some(bad) = rest.find(['/', '?', '#', '@', ' ']) {
        let what = match &rest[bad..=bad] {
            "/" => "a path (browsers send no trailing `/`)",
            "?" => "a query",
            "#" => "a fragment",
            "@" => "user info",
            _ => "a space",
        };
        return Err(format!("`{item}` has {what}: {example}"));
    }
    Ok(())
}

/// `--per-ip-exempt`: IP addresses and CIDR blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpNets(Vec<IpNet>);

impl IpNets {
    /// No exemptions.
    pub fn none() -> Self {
        IpNets(Vec::new())
    }

    /// Parses a comma-separated list of `ADDR` or `ADDR/PREFIX`; empty or
    /// `none` for none.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(IpNets::none());
        }
        s.split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(IpNet::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(IpNets)
    }

    /// Whether `ip` is in one of the blocks (IPv4-mapped IPv6 addresses
    /// count as their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(ip))
    }
}

impl std::fmt::Display for IpNets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}/{}", net.addr, net.prefix)?;
        }
        Ok(())
    }
}

/// One address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("`{s}` is not an IP address or CIDR block (e.g. 10.0.0.5, 10.0.0.0/8, ::1, fd00::/8)")
        })?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`{s}`: the prefix length must be 0 to {max}")),
            },
        };
        Ok(IpNet { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_and_match_exactly() {
        assert!(AllowedOrigins::parse("*").unwrap().is_any());
        assert!(AllowedOrigins::parse("").unwrap().is_any());
        let o = AllowedOrigins::parse("https://Game.example, http://localhost:8765,null").unwrap();
        assert!(o.allows(b"https://game.example"));
        assert!(o.allows(b"HTTPS://GAME.EXAMPLE"));
        assert!(o.allows(b"http://localhost:8765"));
        assert!(o.allows(b"null"));
        assert!(!o.allows(b"https://game.example:443"));
        assert!(!o.allows(b"https://evil.game.example"));
        assert!(!o.allows(b"https://game.example.evil"));
        assert!(!o.allows(b"http://localhost"));
        for bad in [
            "https://game.example/",
            "game.example",
            "https://",
            "https://a.example,*",
            "https://u@a.example",
            "1http://a.example",
        ] {
            let e = AllowedOrigins::parse(bad).unwrap_err();
            assert!(e.contains('`'), "{bad}: {e}");
        }
    }

    #[test]
    fn ip_nets_parse_and_match() {
        let n = IpNets::parse("127.0.0.0/8,::1, 10.1.2.3").unwrap();
        assert!(n.contains("127.9.9.9".parse().unwrap()));
        assert!(n.contains("::1".parse().unwrap()));
        assert!(n.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("10.1.2.4".parse().unwrap()));
        assert!(!n.contains("::2".parse().unwrap()));
        assert_eq!(n.to_string(), "127.0.0.0/8,::1/128,10.1.2.3/32");
        assert_eq!(IpNets::parse("none").unwrap(), IpNets::none());
        assert!(IpNets::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpNets::parse("::/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert!(IpNets::parse("10.0.0.0/33").is_err());
        assert!(IpNets::parse("example.com").is_err());
    }

    #[test]
    fn tls_needs_both_files() {
        let e = Config::try_parse_from(["playfield", "--tls-cert", "c.pem"]).unwrap_err();
        assert!(e.to_string().contains("--tls-key"), "{e}");
        let e = Config::try_parse_from(["playfield", "--tls-key", "k.pem"]).unwrap_err();
        assert!(e.to_string().contains("--tls-cert"), "{e}");
        let c = Config::try_parse_from(["playfield", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
            .unwrap();
        assert!(c.tls());
        let mut c = Config::for_tests();
        c.tls_cert = Some("c.pem".into());
        assert!(c.validate().unwrap_err().contains("--tls-key"));
    }
}
