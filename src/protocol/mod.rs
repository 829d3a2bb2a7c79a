//! The wire protocols: the seed's JSON, kept byte-compatible with its
//! `client.html`, and our native protocol in two encodings (JSON text and
//! binary deltas), negotiated with `Sec-WebSocket-Protocol`. See
//! `docs/PROTOCOL.md`.
//!
//! This module turns client frames into typed messages and typed snapshots
//! into frames; it knows nothing of sockets or rooms, and nothing of any
//! particular game: game data passes through as `G::Input` and the typed
//! [`crate::replicate::World`].

use std::fmt::Write as _;

pub mod bin;
pub mod encoder;
pub mod json;
pub mod pieces;

pub use crate::snapshot::unix_millis;

use serde::Deserialize;
use serde_json::error::Category;

use crate::game::{Game, PlayerId, SeedDirection};

/// Subprotocol name of the native protocol, version 1, JSON encoding.
pub const NATIVE_JSON_V1: &str = "playfield.v1.json";
/// Subprotocol name of the native protocol, version 1, binary encoding.
pub const NATIVE_BIN_V1: &str = "playfield.v1.bin";
/// The native protocol version carried in `welcome`.
pub const NATIVE_VERSION: u32 = 1;
/// Subprotocols we accept.
pub const SUPPORTED_SUBPROTOCOLS: &[&str] = &[NATIVE_BIN_V1, NATIVE_JSON_V1];

/// Which protocol a connection speaks, fixed at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// No subprotocol asked: the seed's `init` / `state_update` / `move`.
    Seed,
    /// `playfield.v1.json`.
    NativeJson,
    /// `playfield.v1.bin`: binary snapshots (quantised deltas), binary or JSON
    /// client messages.
    NativeBin,
}

impl Protocol {
    /// Picks the protocol for the subprotocols a client offered: the first
    /// one we support, in the client's order.
    ///
    /// No offer means the seed protocol. An offer with nothing we support is an
    /// error rather than a silent fallback: a client that asked for a protocol
    /// would misread the seed's messages.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let offered: Vec<&str> = offered
            .into_iter()
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if offered.is_empty() {
            return Ok(Protocol::Seed);
        }
        for p in &offered {
            match *p {
                NATIVE_BIN_V1 => return Ok(Protocol::NativeBin),
                NATIVE_JSON_V1 => return Ok(Protocol::NativeJson),
                _ => {}
            }
        }
        Err(format!(
            "unsupported WebSocket subprotocol {}: this server speaks {} (or no subprotocol for the seed JSON protocol)",
            offered.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "),
            SUPPORTED_SUBPROTOCOLS.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "),
        ))
    }

    /// The subprotocol name to echo in the handshake response, if any.
    pub fn subprotocol(self) -> Option<&'static str> {
        match self {
            Protocol::Seed => None,
            Protocol::NativeJson => Some(NATIVE_JSON_V1),
            Protocol::NativeBin => Some(NATIVE_BIN_V1),
        }
    }

    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Seed => "seed",
            Protocol::NativeJson => NATIVE_JSON_V1,
            Protocol::NativeBin => NATIVE_BIN_V1,
        }
    }

    /// Whether clients may send binary frames.
    pub fn accepts_binary(self) -> bool {
        self == Protocol::NativeBin
    }

    /// Whether its clients can resume a player: the native protocols carry
    /// a `resume_token` in `welcome`; the seed's `init` has no place for one.
    pub fn resumable(self) -> bool {
        self != Protocol::Seed
    }
}

/// A decoded client message.
#[derive(Debug, PartialEq)]
pub enum ClientMessage<I> {
    /// One tick of input. Seed moves carry `seq` 0: the seed has no sequence numbers.
    Input { seq: u32, input: I },
    /// A round-trip probe; answered with a `pong` carrying the same id.
    Ping { id: u64 },
}

/// Why a client message was refused; sent back as an `error` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

/// Machine-readable error codes; see `docs/PROTOCOL.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    UnknownType,
    InvalidMessage,
    RoomFull,
    TooManyRooms,
    InvalidRoom,
    ServerFull,
    UnsupportedProtocol,
    RateLimited,
    /// `?resume=`: malformed, or never issued by this server.
    ResumeInvalid,
    /// `?resume=`: the token was used already.
    ResumeUsed,
    /// `?resume=`: the grace period ended, or the player left.
    ResumeExpired,
    /// `?resume=`: the token's player is in another room than `?room=`.
    ResumeWrongRoom,
    /// The room stopped after an internal error while joining.
    RoomFailed,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ResumeInvalid => "resume_invalid",
            ErrorCode::ResumeUsed => "resume_used",
            ErrorCode::ResumeExpired => "resume_expired",
            ErrorCode::ResumeWrongRoom => "resume_wrong_room",
            ErrorCode::RoomFailed => "room_failed",
        }
    }
}

impl ProtocolError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }
}

/// Only the `type` field; everything else is ignored at this stage, so one
/// parse tells a syntax error from a message of the wrong shape.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct SeedMove {
    direction: SeedDirection,
}

#[derive(Deserialize)]
struct NativeInput<I> {
    seq: u32,
    input: I,
}

#[derive(Deserialize)]
struct NativePing {
    id: u64,
}

const SEED_TYPES: &str = "`move`";
const NATIVE_TYPES: &str = "`input`, `ping`";

/// Decodes one binary frame from a client speaking `protocol` (only
/// `playfield.v1.bin` clients send them; see [`Protocol::accepts_binary`]).
pub fn decode_binary<G: Game>(bytes: &[u8]) -> Result<ClientMessage<G::Input>, ProtocolError> {
    bin::decode_client::<G::Input>(bytes)
}

/// Decodes one text frame from a client speaking `protocol`.
pub fn decode<G: Game>(
    protocol: Protocol,
    text: &str,
) -> Result<ClientMessage<G::Input>, ProtocolError> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ProtocolError::new(
            ErrorCode::InvalidJson,
            format!("message is not valid JSON: {e}"),
        ),
        Category::Data => ProtocolError::new(
            ErrorCode::InvalidMessage,
            "message must be a JSON object with a string field `type`",
        ),
    })?;
    let kind = envelope.kind.as_deref();
    match (protocol, kind) {
        (Protocol::Seed, Some("move")) => {
            let m: SeedMove = typed(text, "move")?;
            let input = G::seed_move(m.direction).ok_or_else(|| {
                ProtocolError::new(
                    ErrorCode::UnknownType,
                    "this game cannot be played with seed `move` messages; connect with subprotocol `playfield.v1.json`",
                )
            })?;
            Ok(ClientMessage::Input { seq: 0, input })
        }
        (Protocol::NativeJson | Protocol::NativeBin, Some("input")) => {
            let m: NativeInput<G::Input> = typed(text, "input")?;
            Ok(ClientMessage::Input {
                seq: m.seq,
                input: m.input,
            })
        }
        (Protocol::NativeJson | Protocol::NativeBin, Some("ping")) => {
            let m: NativePing = typed(text, "ping")?;
            Ok(ClientMessage::Ping { id: m.id })
        }
        (_, kind) => {
            let known = match protocol {
                Protocol::Seed => SEED_TYPES,
                Protocol::NativeJson | Protocol::NativeBin => NATIVE_TYPES,
            };
            let what = match kind {
                Some(k) => format!("unknown message type `{}`", truncate(k, 40)),
                None => "message has no `type` field".to_owned(),
            };
            Err(ProtocolError::new(
                ErrorCode::UnknownType,
                format!(
                    "{what}; this protocol ({}) accepts {known}",
                    protocol.name()
                ),
            ))
        }
    }
}

fn typed<'a, T: Deserialize<'a>>(text: &'a str, kind: &str) -> Result<T, ProtocolError> {
    serde_json::from_str(text).map_err(|e| {
        ProtocolError::new(
            ErrorCode::InvalidMessage,
            format!("invalid `{kind}` message: {e}"),
        )
    })
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Server → client messages, encoded as JSON text.
pub mod encode {
    use super::*;
    use serde::Serialize;

    /// Seed `init`.
    pub fn seed_init(id: PlayerId) -> String {
        serde_json::json!({"type": "init", "id": id.to_string()}).to_string()
    }

    /// What `welcome` tells a native client.
    pub struct Welcome<'a, W: Serialize> {
        pub id: PlayerId,
        pub room: &'a str,
        pub tick_rate: u32,
        pub input_buffer: u32,
        pub server_time: f64,
        pub world: &'a W,
        pub schema: &'a crate::replicate::Schema,
        /// Side of the square the client sees around its entity (px).
        pub view_size: f64,
        /// The token to resume this player with, if resuming is on.
        pub resume_token: Option<String>,
        /// On a resumed connection: the highest input `seq` the server has
        /// accepted from this player. The client goes on counting above it.
        pub resumed_seq: Option<u32>,
    }

    /// Native `welcome` (JSON text in both encodings).
    pub fn welcome<W: Serialize>(w: &Welcome<'_, W>) -> String {
        let mut msg = serde_json::json!({
            "type": "welcome",
            "protocol": NATIVE_VERSION,
            "id": w.id,
            "room": w.room,
            "tick_rate": w.tick_rate,
            "server_time": w.server_time,
            "input_buffer": w.input_buffer,
            "world": w.world,
            "schema": w.schema,
            "view_size": w.view_size,
        });
        if let Some(token) = &w.resume_token {
            msg["resume_token"] = token.as_str().into();
        }
        msg["resumed"] = w.resumed_seq.is_some().into();
        if let Some(seq) = w.resumed_seq {
            msg["last_seq"] = seq.into();
        }
        msg.to_string()
    }

    /// Native `snapshot` for one client: a small per-client header around the
    /// room's state, which was serialised once for everyone.
    pub fn snapshot(tick: u64, time: f64, ack: u32, state_json: &str) -> String {
        let mut out = String::with_capacity(state_json.len() + 80);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            r#"{{"type":"snapshot","tick":{tick},"time":{time:.1},"ack":{ack},"state":"#
        );
        out.push_str(state_json);
        out.push('}');
        out
    }

    /// Native `pong`.
    pub fn pong(id: u64, server_time: f64) -> String {
        format!(r#"{{"type":"pong","id":{id},"server_time":{server_time:.1}}}"#)
    }

    /// Native `error` (seed clients get it too: the seed client ignores
    /// unknown types, and other seed-protocol tools can show it).
    pub fn error(err: &ProtocolError) -> String {
        serde_json::json!({"type": "error", "code": err.code.as_str(), "message": err.message})
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dots::{DotGame, DotInput};
    use crate::game::Game;

    fn native(text: &str) -> Result<ClientMessage<DotInput>, ProtocolError> {
        decode::<DotGame>(Protocol::NativeJson, text)
    }
    fn seed(text: &str) -> Result<ClientMessage<DotInput>, ProtocolError> {
        decode::<DotGame>(Protocol::Seed, text)
    }

    #[test]
    fn negotiation() {
        assert_eq!(Protocol::negotiate([]), Ok(Protocol::Seed));
        assert_eq!(
            Protocol::negotiate(["foo, playfield.v1.json"]),
            Ok(Protocol::NativeJson)
        );
        let err = Protocol::negotiate(["chat"]).unwrap_err();
        assert!(
            err.contains("`chat`") && err.contains(NATIVE_JSON_V1),
            "{err}"
        );
        assert_eq!(
            Protocol::negotiate(["playfield.v1.bin"]),
            Ok(Protocol::NativeBin)
        );
        assert_eq!(
            Protocol::negotiate(["playfield.v1.json", "playfield.v1.bin"]),
            Ok(Protocol::NativeJson),
            "the client's order decides"
        );
    }

    #[test]
    fn seed_move_decodes() {
        assert_eq!(
            seed(r#"{"type":"move","direction":"LEFT"}"#),
            Ok(ClientMessage::Input {
                seq: 0,
                input: DotGame::seed_move(SeedDirection::Left).unwrap()
            })
        );
    }

    #[test]
    fn native_input_and_ping_decode() {
        assert_eq!(
            native(r#"{"type":"input","seq":5,"input":{"x":1,"y":-0.5}}"#),
            Ok(ClientMessage::Input {
                seq: 5,
                input: DotInput::steer(1.0, -0.5)
            })
        );
        assert_eq!(
            native(r#"{"type":"ping","id":9}"#),
            Ok(ClientMessage::Ping { id: 9 })
        );
    }

    #[test]
    fn errors_are_specific() {
        let e = native("{not json").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        let e = native("[1,2]").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        let e = native(r#"{"type":"teleport"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownType);
        assert!(e.message.contains("`teleport`") && e.message.contains("`input`"));
        let e = native(r#"{"kind":"input"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownType);
        let e = native(r#"{"type":"input","seq":"one","input":{"x":1,"y":0}}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        assert!(
            e.message.contains("seq") || e.message.contains("string"),
            "{}",
            e.message
        );
        let e = seed(r#"{"type":"move","direction":"up"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        assert!(e.message.contains("UP"), "{}", e.message);
        // Native messages are not seed messages and vice versa.
        assert_eq!(
            seed(r#"{"type":"ping","id":1}"#).unwrap_err().code,
            ErrorCode::UnknownType
        );
        assert_eq!(
            native(r#"{"type":"move","direction":"UP"}"#)
                .unwrap_err()
                .code,
            ErrorCode::UnknownType
        );
    }

    #[test]
    fn snapshot_wraps_shared_state() {
        let s = encode::snapshot(3, 1000.0, 7, r#"{"players":[]}"#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["type"], "snapshot");
        assert_eq!(v["tick"], 3);
        assert_eq!(v["ack"], 7);
        assert_eq!(v["state"]["players"], serde_json::json!([]));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }

    proptest::proptest! {
        /// No input, however malformed, makes the decoder panic.
        #[test]
        fn decode_never_panics(s in ".{0,200}") {
            let _ = native(&s);
            let _ = seed(&s);
        }
    }
}
