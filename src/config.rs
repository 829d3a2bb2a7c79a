//! Server settings: every limit lives here, each with a flag, an environment
//! variable and a default that is safe on a small machine.

use std::net::IpAddr;
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

    /// Most WebSocket connections at once; more are refused (close 1013).
    #[arg(long, env = "PLAYFIELD_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Largest client message in bytes; larger ones close the connection (1009).
    #[arg(long, env = "PLAYFIELD_MAX_MESSAGE_BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub max_message_bytes: u32,

    /// Unapplied inputs kept per player; the room applies one per tick and
    /// drops what overflows, so flooding gains no speed.
    #[arg(long, env = "PLAYFIELD_INPUT_BUFFER", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub input_buffer: u32,

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
    /// the WebSocket handshake) before the connection is closed.
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
        if self.idle_timeout < self.ping_interval * 2 {
            return Err(format!(
                "--idle-timeout ({} s) must be at least twice --ping-interval ({} s): clients are dropped when no pong arrives within the idle timeout, so every client would be dropped between pings",
                self.idle_timeout.as_secs_f64(),
                self.ping_interval.as_secs_f64()
            ));
        }
        Ok(())
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
