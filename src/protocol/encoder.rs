//! Per-session encoders: what one client receives for a room's [`Snapshot`].
//!
//! The session owns its encoder, so the room never needs to know which
//! protocols its clients speak. Anything all clients of one encoding share
//! (the seed message, the native `state` JSON, the binary delta and full
//! bodies) is encoded once per tick into the snapshot's cache; per client
//! there is only a small header (tick, ack, base) and one copy.

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;

use crate::game::PlayerId;
use crate::snapshot::{Encoded, Snapshot};

use super::{bin, encode, json, Protocol};

const SLOT_SEED: usize = 0;
const SLOT_JSON_STATE: usize = 1;
const SLOT_BIN_DELTA: usize = 2;
const SLOT_BIN_FULL: usize = 3;

/// Turns snapshots into one client's messages, remembering what that client
/// already has: the binary protocol's delta baseline.
#[derive(Debug)]
pub enum Encoder {
    Seed,
    Json,
    Bin {
        /// The tick of the last snapshot sent: the client's baseline. A
        /// delta is only ever built against this; a client that skipped a
        /// tick (slow reader, catch-up burst) gets a full snapshot instead.
        last: Option<u64>,
        /// The own entity's exact position as last sent, so it is only sent
        /// again when it changes.
        own: Option<(f64, f64)>,
    },
}

impl Encoder {
    pub fn new(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Seed => Encoder::Seed,
            Protocol::NativeJson => Encoder::Json,
            Protocol::NativeBin => Encoder::Bin {
                last: None,
                own: None,
            },
        }
    }

    /// The message carrying `snap` to `player`; `None` for the placeholder a
    /// room starts with (tick 0), which has nothing to show yet.
    pub fn snapshot(&mut self, snap: &Snapshot, player: PlayerId) -> Option<Message> {
        if snap.tick == 0 {
            return None;
        }
        Some(match self {
            Encoder::Seed => Message::Text(shared_text(snap, SLOT_SEED, || {
                serde_json::to_string(&json::SeedState(&snap.world)).unwrap_or_default()
            })),
            Encoder::Json => {
                let state = shared_text(snap, SLOT_JSON_STATE, || {
                    serde_json::to_string(&json::NativeState(&snap.world)).unwrap_or_default()
                });
                Message::Text(
                    encode::snapshot(snap.tick, snap.time, snap.ack(player), state.as_str()).into(),
                )
            }
            Encoder::Bin { last, own } => {
                let delta_base = snap
                    .prev
                    .as_ref()
                    .filter(|_| *last == snap.tick.checked_sub(1));
                let (base, body) = match delta_base {
                    Some(prev) => (
                        1,
                        shared_bytes(snap, SLOT_BIN_DELTA, || {
                            let mut out = Vec::new();
                            bin::encode_delta(prev, &snap.world, &mut out);
                            out
                        }),
                    ),
                    None => (
                        0,
                        shared_bytes(snap, SLOT_BIN_FULL, || {
                            let mut out = Vec::new();
                            bin::encode_full(&snap.world, &mut out);
                            out
                        }),
                    ),
                };
                *last = Some(snap.tick);
                // The game's entity for this player, by convention its player id.
                let exact = snap
                    .world
                    .index_of(player)
                    .and_then(|i| snap.world.entities().get(i))
                    .map(|e| (e.x, e.y));
                let same = |a: (f64, f64), b: (f64, f64)| {
                    a.0.to_bits() == b.0.to_bits() && a.1.to_bits() == b.1.to_bits()
                };
                let send_own = match (exact, *own) {
                    (Some(e), Some(o)) => base == 0 || !same(e, o),
                    (e, _) => e.is_some(),
                };
                *own = exact;
                let header = bin::Header {
                    tick: snap.tick,
                    ack: snap.ack(player),
                    base,
                    own: exact.filter(|_| send_own),
                };
                let mut msg = Vec::with_capacity(body.len() + 32);
                bin::put_header(&mut msg, &header);
                msg.extend_from_slice(&body);
                Message::Binary(Bytes::from(msg))
            }
        })
    }
}

fn shared_text(snap: &Snapshot, slot: usize, make: impl FnOnce() -> String) -> Utf8Bytes {
    match snap
        .cache
        .get_or_init(slot, || Encoded::Text(Utf8Bytes::from(make())))
    {
        Encoded::Text(t) => t,
        // Each slot is only ever filled by one of these helpers.
        Encoded::Bytes(_) => Utf8Bytes::from_static(""),
    }
}

fn shared_bytes(snap: &Snapshot, slot: usize, make: impl FnOnce() -> Vec<u8>) -> Bytes {
    match snap
        .cache
        .get_or_init(slot, || Encoded::Bytes(Bytes::from(make())))
    {
        Encoded::Bytes(b) => b,
        Encoded::Text(_) => Bytes::new(),
    }
}
