//! `playfield.v1.bin`: binary snapshots with quantised delta state, and
//! binary inputs. Byte by byte in `docs/PROTOCOL.md`.
//!
//! Hand-written rather than a serde format (bincode, postcard, msgpack):
//! what makes it small is not how single values are packed but what is
//! left out. Records name entities by the gap to the previous record's id,
//! an op code picks the shortest shape of a change (a move along one axis is
//! two bytes), and positions are deltas in grid units. No serde data model
//! expresses "the fields that changed since the tick this client has".
//! Inputs, which are the game's own serde types, do go through `postcard`.
//!
//! Snapshot layout: the type (`0x01`, or `0x02` when the client's own entity's
//! exact position follows the header), `tick` (varint), `ack` (varint),
//! `base` (varint: 0 for a full snapshot, else how many ticks back the
//! snapshot this delta applies to is: always 1 today), [own `x`, `y` as f64
//! little-endian], then records until the end of the message.
//!
//! Other entities' positions are quantised to 1/8 px; the client's own entity
//! is also sent exactly (only when it changed), so that prediction replays
//! from the very same f64 the server holds and stays bit-identical.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::replicate::change_mask;
use crate::replicate::{
    diff, field_bit, to_units, Change, EntityId, FieldKind, Value, World, POSITION_BIT,
};

use super::{ClientMessage, ErrorCode, ProtocolError};

/// Server → client: a snapshot.
pub const MSG_SNAPSHOT: u8 = 0x01;
/// Server → client: a snapshot with the client's own exact position.
pub const MSG_SNAPSHOT_OWN: u8 = 0x02;
/// Client → server: one tick of input.
pub const MSG_INPUT: u8 = 0x01;
/// Client → server: a round-trip probe (answered with a JSON `pong`).
pub const MSG_PING: u8 = 0x02;

/// Record op codes (top three bits of a record's first byte).
pub mod op {
    /// Position moved by `(dx, dy)`, each an `i8` in grid units.
    pub const MOVE: u8 = 0;
    /// Position moved along x only: `dx` as an `i8`.
    pub const MOVE_X: u8 = 1;
    /// Position moved along y only: `dy` as an `i8`.
    pub const MOVE_Y: u8 = 2;
    /// Changed fields: a varint mask (bit 0 position, bit i+1 field i), then
    /// the absolute position if bit 0, then each changed field's value.
    pub const UPDATE: u8 = 3;
    /// An entity the client may not have: absolute position, then every
    /// field's value. If the client has it already, it is replaced.
    pub const SPAWN: u8 = 4;
    /// The entity is gone (from the game, or from this client's view).
    pub const DESPAWN: u8 = 5;
    /// Starts a new run of records: the next gap counts from id 0 again.
    /// One byte, `0xC0` (the encoder sends gap bits 0; decoders ignore them). Messages built from shared per-cell
    /// pieces put one between pieces, since ids only ascend within a run.
    pub const RESET: u8 = 6;
}

/// Gap values 0..=30 fit in the record's first byte; 31 means a varint follows.
const GAP_INLINE: u64 = 31;

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` as a zigzag varint (small magnitudes of either sign are short).
pub fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::Int(i) => put_zigzag(out, *i),
        Value::Float(f) => out.extend_from_slice(&f.to_le_bytes()),
        Value::Str(s) => {
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// A record's first byte (and gap varint): `op` and the id gap. `next` is
/// the smallest id the record may have: 0 for the first record, the previous
/// record's id + 1 after that; the gap is `id - next`.
fn put_head(out: &mut Vec<u8>, op: u8, next: &mut EntityId, id: EntityId) {
    debug_assert!(id >= *next, "records must ascend by id within a run");
    let gap = id.saturating_sub(*next);
    *next = id.saturating_add(1);
    if gap < GAP_INLINE {
        out.push(op << 5 | gap as u8);
    } else {
        out.push(op << 5 | GAP_INLINE as u8);
        put_varint(out, gap - GAP_INLINE);
    }
}

/// The header every snapshot starts with.
pub fn put_header(out: &mut Vec<u8>, h: &Header) {
    out.push(if h.own.is_some() {
        MSG_SNAPSHOT_OWN
    } else {
        MSG_SNAPSHOT
    });
    put_varint(out, h.tick);
    put_varint(out, u64::from(h.ack));
    put_varint(out, h.base);
    if let Some((x, y)) = h.own {
        out.extend_from_slice(&x.to_le_bytes());
        out.extend_from_slice(&y.to_le_bytes());
    }
}

/// Records for a full snapshot: every entity as a spawn.
pub fn encode_full(world: &World, out: &mut Vec<u8>) {
    let mut next = 0;
    for i in 0..world.len() {
        put_spawn(out, &mut next, world, i);
    }
}

/// A `RESET` record: the next record's gap counts from id 0 again.
pub fn put_reset(out: &mut Vec<u8>) {
    out.push(op::RESET << 5);
}

/// A `SPAWN` record for the entity at `index` of `world`.
pub fn put_spawn(out: &mut Vec<u8>, next: &mut EntityId, world: &World, index: usize) {
    let Some(e) = world.entities().get(index) else {
        return;
    };
    put_head(out, op::SPAWN, next, e.id);
    put_zigzag(out, to_units(e.x));
    put_zigzag(out, to_units(e.y));
    for v in world.fields(index) {
        put_value(out, v);
    }
}

/// A `DESPAWN` record.
pub fn put_despawn(out: &mut Vec<u8>, next: &mut EntityId, id: EntityId) {
    put_head(out, op::DESPAWN, next, id);
}

/// The record that brings one entity from `prev[p]` to `cur[c]`, in its
/// shortest shape (a move along one axis is two bytes); nothing if nothing
/// changed.
pub fn put_update(
    out: &mut Vec<u8>,
    next: &mut EntityId,
    prev: &World,
    p: usize,
    cur: &World,
    c: usize,
) {
    let mask = change_mask(prev, p, cur, c);
    let (Some(a), Some(b)) = (prev.entities().get(p), cur.entities().get(c)) else {
        return;
    };
    if mask == 0 {
        return;
    }
    if mask == POSITION_BIT {
        let dx = i8::try_from(to_units(b.x).saturating_sub(to_units(a.x)));
        let dy = i8::try_from(to_units(b.y).saturating_sub(to_units(a.y)));
        if let (Ok(dx), Ok(dy)) = (dx, dy) {
            match (dx, dy) {
                (dx, 0) => {
                    put_head(out, op::MOVE_X, next, b.id);
                    out.push(dx as u8);
                }
                (0, dy) => {
                    put_head(out, op::MOVE_Y, next, b.id);
                    out.push(dy as u8);
                }
                (dx, dy) => {
                    put_head(out, op::MOVE, next, b.id);
                    out.extend_from_slice(&[dx as u8, dy as u8]);
                }
            }
            return;
        }
    }
    put_head(out, op::UPDATE, next, b.id);
    put_varint(out, mask);
    if mask & POSITION_BIT != 0 {
        put_zigzag(out, to_units(b.x));
        put_zigzag(out, to_units(b.y));
    }
    for (k, v) in cur.fields(c).iter().enumerate() {
        if mask & field_bit(k) != 0 {
            put_value(out, v);
        }
    }
}

/// Records that bring a client holding all of `prev` up to all of `cur`:
/// spawns, despawns and changed fields only, in id order.
pub fn encode_delta(prev: &World, cur: &World, out: &mut Vec<u8>) {
    let mut changes = Vec::new();
    diff(prev, cur, &mut changes);
    let mut next = 0;
    for change in changes {
        match change {
            Change::Spawn { index } => put_spawn(out, &mut next, cur, index),
            Change::Despawn { id } => put_despawn(out, &mut next, id),
            Change::Update {
                index, prev_index, ..
            } => put_update(out, &mut next, prev, prev_index, cur, index),
        }
    }
}

/// Why a binary message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    VarintTooLong,
    UnknownMessage(u8),
    UnknownOp(u8),
    UnknownEntity(EntityId),
    IdOverflow,
    /// A delta against a tick the decoder does not hold.
    BaseMismatch {
        have: Option<u64>,
        needs: u64,
    },
    /// A change mask naming fields the schema does not have.
    BadMask(u64),
    InvalidUtf8,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("message ends in the middle of a value"),
            DecodeError::VarintTooLong => f.write_str("varint longer than 10 bytes"),
            DecodeError::UnknownMessage(t) => write!(f, "unknown message type 0x{t:02x}"),
            DecodeError::UnknownOp(o) => write!(f, "unknown record op {o}"),
            DecodeError::UnknownEntity(id) => write!(f, "record for unknown entity {id}"),
            DecodeError::IdOverflow => f.write_str("entity id overflows 64 bits"),
            DecodeError::BaseMismatch { have, needs } => {
                write!(
                    f,
                    "delta against tick {needs}, but the client holds {have:?}"
                )
            }
            DecodeError::BadMask(m) => {
                write!(f, "change mask {m:#x} names fields the schema lacks")
            }
            DecodeError::InvalidUtf8 => f.write_str("string field is not UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads the primitive values of the binary protocol.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(DecodeError::VarintTooLong);
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::VarintTooLong)
    }

    pub fn zigzag(&mut self) -> Result<i64, DecodeError> {
        let u = self.varint()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    fn f64(&mut self) -> Result<f64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    fn i8(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from(self.u8()? as i8))
    }

    fn value(&mut self, kind: FieldKind) -> Result<Value, DecodeError> {
        Ok(match kind {
            FieldKind::Bool => Value::Bool(self.u8()? != 0),
            FieldKind::Int => Value::Int(self.zigzag()?),
            FieldKind::Float => {
                let b = self.take(4)?;
                Value::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            FieldKind::Str => {
                let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::Truncated)?;
                let bytes = self.take(len)?;
                let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
                Value::Str(s.into())
            }
        })
    }
}

/// The fixed part of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    pub tick: u64,
    pub ack: u32,
    /// 0: a full snapshot; n: a delta against tick `tick - n`.
    pub base: u64,
    /// The client's own entity's exact position, when it changed (always in
    /// a full snapshot while the entity exists).
    pub own: Option<(f64, f64)>,
}

/// Reads a snapshot's header; the reader is left at the first record.
pub fn read_header(r: &mut Reader<'_>) -> Result<Header, DecodeError> {
    let with_own = match r.u8()? {
        MSG_SNAPSHOT => false,
        MSG_SNAPSHOT_OWN => true,
        t => return Err(DecodeError::UnknownMessage(t)),
    };
    let tick = r.varint()?;
    let ack = u32::try_from(r.varint()?).unwrap_or(u32::MAX);
    let base = r.varint()?;
    let own = if with_own {
        Some((r.f64()?, r.f64()?))
    } else {
        None
    };
    Ok(Header {
        tick,
        ack,
        base,
        own,
    })
}

/// One entity as a client holds it: position in grid units, fields by schema.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteEntity {
    pub x: i64,
    pub y: i64,
    pub fields: Vec<Value>,
}

/// A client's copy of the state, kept up to date by applying snapshots:
/// the reference decoder (bots and tests use it; the browser's `bin.js`
/// does the same in JavaScript and is checked against the same fixtures).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replica {
    /// The tick of the last snapshot applied.
    pub tick: Option<u64>,
    pub entities: Entities,
    /// The client's own entity's exact position, as last sent.
    pub own: Option<(f64, f64)>,
}

/// A replica's entities, sorted by id.
///
/// Two parallel vectors rather than a map: records ascend by id within a
/// run, so the decoder walks them with a cursor and most lookups are one
/// comparison (a bot decoding 1,000-entity deltas spent two thirds of its
/// core in `BTreeMap` lookups before).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entities {
    ids: Vec<EntityId>,
    items: Vec<RemoteEntity>,
}

impl Entities {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn get(&self, id: &EntityId) -> Option<&RemoteEntity> {
        let i = self.ids.binary_search(id).ok()?;
        self.items.get(i)
    }

    pub fn contains_key(&self, id: &EntityId) -> bool {
        self.ids.binary_search(id).is_ok()
    }

    /// `(id, entity)` in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&EntityId, &RemoteEntity)> {
        self.ids.iter().zip(&self.items)
    }

    pub fn values(&self) -> impl Iterator<Item = &RemoteEntity> {
        self.items.iter()
    }

    fn clear(&mut self) {
        self.ids.clear();
        self.items.clear();
    }

    /// Where `id` is (`Ok`) or would go (`Err`), searching from `from` on:
    /// the caller knows nothing before `from` can be `id`.
    fn locate(&self, from: usize, id: EntityId) -> Result<usize, usize> {
        let from = from.min(self.ids.len());
        match self.ids.get(from) {
            Some(&here) if here == id => Ok(from),
            Some(&here) if here > id => Err(from),
            None => Err(from),
            _ => match self.ids.get(from..).map(|rest| rest.binary_search(&id)) {
                Some(Ok(i)) => Ok(from + i),
                Some(Err(i)) => Err(from + i),
                None => Err(self.ids.len()),
            },
        }
    }
}

impl std::ops::Index<&EntityId> for Entities {
    type Output = RemoteEntity;

    /// Panics if the entity is absent, like a map's index (for tests).
    fn index(&self, id: &EntityId) -> &RemoteEntity {
        match self.get(id) {
            Some(e) => e,
            None => panic!("no entity {id}"),
        }
    }
}

impl Replica {
    /// Applies one snapshot message. On error the replica may be half
    /// updated; a client then needs a full snapshot (reconnect).
    pub fn apply(&mut self, msg: &[u8], kinds: &[FieldKind]) -> Result<Header, DecodeError> {
        let mut r = Reader::new(msg);
        let h = read_header(&mut r)?;
        if h.base == 0 {
            self.entities.clear();
            self.own = None;
        } else {
            let needs = h.tick.checked_sub(h.base);
            if needs.is_none() || self.tick != needs {
                return Err(DecodeError::BaseMismatch {
                    have: self.tick,
                    needs: needs.unwrap_or(0),
                });
            }
        }
        let mut next: EntityId = 0;
        // Index in `entities` at or before the next record's entity.
        let mut cursor = 0usize;
        while !r.is_empty() {
            let head = r.u8()?;
            let (opc, mut gap) = (head >> 5, u64::from(head & 0x1f));
            if opc == op::RESET {
                next = 0;
                cursor = 0;
                continue;
            }
            if gap == GAP_INLINE {
                gap = gap
                    .checked_add(r.varint()?)
                    .ok_or(DecodeError::IdOverflow)?;
            }
            let id = next.checked_add(gap).ok_or(DecodeError::IdOverflow)?;
            next = id.saturating_add(1);
            let at = self.entities.locate(cursor, id);
            let ents = &mut self.entities;
            let known = |at: Result<usize, usize>| at.map_err(|_| DecodeError::UnknownEntity(id));
            match opc {
                op::SPAWN => {
                    let x = r.zigzag()?;
                    let y = r.zigzag()?;
                    let fields = kinds
                        .iter()
                        .map(|&k| r.value(k))
                        .collect::<Result<_, _>>()?;
                    let e = RemoteEntity { x, y, fields };
                    cursor = match at {
                        Ok(i) => {
                            if let Some(slot) = ents.items.get_mut(i) {
                                *slot = e;
                            }
                            i + 1
                        }
                        Err(i) => {
                            ents.ids.insert(i, id);
                            ents.items.insert(i, e);
                            i + 1
                        }
                    };
                }
                op::DESPAWN => {
                    let i = known(at)?;
                    ents.ids.remove(i);
                    ents.items.remove(i);
                    cursor = i;
                }
                op::MOVE | op::MOVE_X | op::MOVE_Y => {
                    let dx = if opc == op::MOVE_Y { 0 } else { r.i8()? };
                    let dy = if opc == op::MOVE_X { 0 } else { r.i8()? };
                    let i = known(at)?;
                    let e = ents
                        .items
                        .get_mut(i)
                        .ok_or(DecodeError::UnknownEntity(id))?;
                    e.x = e.x.saturating_add(dx);
                    e.y = e.y.saturating_add(dy);
                    cursor = i + 1;
                }
                op::UPDATE => {
                    let mask = r.varint()?;
                    // Bits above the schema's fields (and above bit 63) are an error.
                    let allowed = u32::try_from(kinds.len() + 1).unwrap_or(u32::MAX);
                    if mask.checked_shr(allowed).unwrap_or(0) != 0 {
                        return Err(DecodeError::BadMask(mask));
                    }
                    let i = known(at)?;
                    cursor = i + 1;
                    let e = ents
                        .items
                        .get_mut(i)
                        .ok_or(DecodeError::UnknownEntity(id))?;
                    if mask & POSITION_BIT != 0 {
                        e.x = r.zigzag()?;
                        e.y = r.zigzag()?;
                    }
                    for (k, &kind) in kinds.iter().enumerate() {
                        if mask & field_bit(k) != 0 {
                            let v = r.value(kind)?;
                            if let Some(slot) = e.fields.get_mut(k) {
                                *slot = v;
                            }
                        }
                    }
                }
                other => return Err(DecodeError::UnknownOp(other)),
            }
        }
        if h.own.is_some() {
            self.own = h.own;
        }
        self.tick = Some(h.tick);
        Ok(h)
    }

    /// The replica as a world would hold it (for comparisons in tests).
    pub fn matches(&self, world: &World) -> bool {
        self.entities.len() == world.len()
            && world.entities().iter().enumerate().all(|(i, e)| {
                self.entities.get(&e.id).is_some_and(|r| {
                    r.x == to_units(e.x)
                        && r.y == to_units(e.y)
                        && r.fields.len() == world.fields(i).len()
                        && r.fields.iter().zip(world.fields(i)).all(|(a, b)| a.same(b))
                })
            })
    }
}

/// A binary `input` message: `0x01`, `seq` (varint), the input in postcard.
pub fn encode_input<I: Serialize>(seq: u32, input: &I) -> Vec<u8> {
    let mut out = vec![MSG_INPUT];
    put_varint(&mut out, u64::from(seq));
    // Serialising plain data into a Vec cannot fail; an empty input is still a valid message.
    if let Ok(bytes) = postcard::to_allocvec(input) {
        out.extend_from_slice(&bytes);
    }
    out
}

/// A binary `ping` message: `0x02`, `id` (varint).
pub fn encode_ping(id: u64) -> Vec<u8> {
    let mut out = vec![MSG_PING];
    put_varint(&mut out, id);
    out
}

/// Decodes one binary frame from a client.
pub fn decode_client<I: DeserializeOwned>(msg: &[u8]) -> Result<ClientMessage<I>, ProtocolError> {
    let bad = |what: String| ProtocolError {
        code: ErrorCode::InvalidMessage,
        message: what,
    };
    let mut r = Reader::new(msg);
    let kind = r
        .u8()
        .map_err(|_| bad("empty binary message; the first byte is the message type".into()))?;
    match kind {
        MSG_INPUT => {
            let seq = r
                .varint()
                .ok()
                .and_then(|s| u32::try_from(s).ok())
                .ok_or_else(|| bad("invalid binary `input`: seq must be a varint of at most 32 bits".into()))?;
            let (input, rest) = postcard::take_from_bytes::<I>(r.rest())
                .map_err(|e| bad(format!("invalid binary `input`: the input does not decode ({e})")))?;
            if !rest.is_empty() {
                return Err(bad(format!(
                    "invalid binary `input`: {} bytes after the input",
                    rest.len()
                )));
            }
            Ok(ClientMessage::Input { seq, input })
        }
        MSG_PING => {
            let id = r
                .varint()
                .map_err(|_| bad("invalid binary `ping`: id must be a varint".into()))?;
            Ok(ClientMessage::Ping { id })
        }
        t => Err(ProtocolError {
            code: ErrorCode::UnknownType,
            message: format!(
                "unknown binary message type 0x{t:02x}; this protocol accepts 0x01 (input) and 0x02 (ping), or JSON text frames"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicate::{Entity, Field, Schema};
    use proptest::prelude::*;
    use std::sync::Arc;

    /// Every field kind, so the fixtures exercise every value encoding.
    pub(crate) static SCHEMA: Schema = Schema {
        collection: "things",
        fields: &[
            Field {
                name: "color",
                kind: FieldKind::Str,
            },
            Field {
                name: "hp",
                kind: FieldKind::Int,
            },
            Field {
                name: "speed",
                kind: FieldKind::Float,
            },
            Field {
                name: "alive",
                kind: FieldKind::Bool,
            },
        ],
    };

    fn kinds() -> Vec<FieldKind> {
        SCHEMA.fields.iter().map(|f| f.kind).collect()
    }

    type Thing = (EntityId, f64, f64, &'static str, i64, f32, bool);

    fn world(things: &[Thing]) -> World {
        let mut w = World::new(&SCHEMA);
        for &(id, x, y, color, hp, speed, alive) in things {
            w.push(
                Entity { id, x, y },
                [
                    Value::Str(Arc::from(color)),
                    Value::Int(hp),
                    Value::Float(speed),
                    Value::Bool(alive),
                ],
            );
        }
        w.finish();
        w
    }

    fn message(tick: u64, ack: u32, base: u64, own: Option<(f64, f64)>, body: &[u8]) -> Vec<u8> {
        let mut msg = Vec::new();
        put_header(
            &mut msg,
            &Header {
                tick,
                ack,
                base,
                own,
            },
        );
        msg.extend_from_slice(body);
        msg
    }

    fn full(tick: u64, w: &World) -> Vec<u8> {
        let mut body = Vec::new();
        encode_full(w, &mut body);
        message(tick, 0, 0, None, &body)
    }

    fn delta(tick: u64, prev: &World, cur: &World) -> Vec<u8> {
        let mut body = Vec::new();
        encode_delta(prev, cur, &mut body);
        message(tick, 0, 1, None, &body)
    }

    #[test]
    fn a_moving_player_costs_two_or_three_bytes() {
        let a = world(&[(1, 100.0, 100.0, "#fff", 1, 0.0, true)]);
        let b = world(&[(1, 110.0, 100.0, "#fff", 1, 0.0, true)]);
        let c = world(&[(1, 117.07, 107.07, "#fff", 1, 0.0, true)]);
        let mut body = Vec::new();
        encode_delta(&a, &b, &mut body);
        assert_eq!(body, [op::MOVE_X << 5 | 1, 80], "id 1 is gap 1 from 0");
        body.clear();
        encode_delta(&b, &c, &mut body);
        assert_eq!(body.len(), 3);
        body.clear();
        encode_delta(&b, &b, &mut body);
        assert!(body.is_empty(), "nothing changed, nothing sent");
    }

    #[test]
    fn deltas_need_their_base_and_full_snapshots_reset() {
        let a = world(&[(1, 10.0, 10.0, "a", 0, 0.0, false)]);
        let b = world(&[(1, 20.0, 10.0, "a", 0, 0.0, false)]);
        let c = world(&[(2, 30.0, 10.0, "b", 0, 0.0, false)]);
        let mut r = Replica::default();
        assert_eq!(
            r.apply(&delta(2, &a, &b), &kinds()),
            Err(DecodeError::BaseMismatch {
                have: None,
                needs: 1
            })
        );
        r.apply(&full(1, &a), &kinds()).unwrap();
        r.apply(&delta(2, &a, &b), &kinds()).unwrap();
        assert!(r.matches(&b));
        // The client skipped tick 3: a delta 3 -> 4 does not apply...
        assert!(matches!(
            r.apply(&delta(4, &b, &c), &kinds()),
            Err(DecodeError::BaseMismatch { .. })
        ));
        // ...a full snapshot does, and forgets what it replaces.
        r.apply(&full(4, &c), &kinds()).unwrap();
        assert!(r.matches(&c));
    }

    #[test]
    fn own_position_is_exact() {
        let msg = message(5, 3, 0, Some((100.1, 7.071_067_811_865_475)), &[]);
        let mut r = Replica::default();
        let h = r.apply(&msg, &kinds()).unwrap();
        assert_eq!(h.own, Some((100.1, 7.071_067_811_865_475)));
        assert_eq!((h.tick, h.ack), (5, 3));
        // A delta without it keeps the last one.
        r.apply(&message(6, 3, 1, None, &[]), &kinds()).unwrap();
        assert_eq!(r.own, Some((100.1, 7.071_067_811_865_475)));
    }

    #[test]
    fn malformed_snapshots_are_specific_errors() {
        let k = kinds();
        let mut r = Replica::default();
        assert_eq!(r.apply(&[], &k), Err(DecodeError::Truncated));
        assert_eq!(r.apply(&[9], &k), Err(DecodeError::UnknownMessage(9)));
        assert_eq!(
            r.apply(&[1, 1, 0, 0, op::DESPAWN << 5], &k),
            Err(DecodeError::UnknownEntity(0))
        );
        assert_eq!(
            r.apply(&[1, 1, 0, 0, 7 << 5], &k),
            Err(DecodeError::UnknownOp(7))
        );
        assert_eq!(
            r.apply(
                &[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                &k
            ),
            Err(DecodeError::VarintTooLong)
        );
    }

    #[test]
    fn client_messages_decode_with_specific_errors() {
        use crate::dots::DotInput;
        let m = encode_input(7, &DotInput::steer(1.0, -0.5));
        assert_eq!(m.len(), 1 + 1 + 16);
        assert_eq!(
            decode_client::<DotInput>(&m),
            Ok(ClientMessage::Input {
                seq: 7,
                input: DotInput::steer(1.0, -0.5)
            })
        );
        assert_eq!(
            decode_client::<DotInput>(&encode_ping(300)),
            Ok(ClientMessage::Ping { id: 300 })
        );
        let e = decode_client::<DotInput>(&[]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        let e = decode_client::<DotInput>(&[0x7f]).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownType);
        assert!(e.message.contains("0x7f"), "{}", e.message);
        let e = decode_client::<DotInput>(&m[..10]).unwrap_err();
        assert!(e.message.contains("does not decode"), "{}", e.message);
        let mut long = m.clone();
        long.push(0);
        let e = decode_client::<DotInput>(&long).unwrap_err();
        assert!(e.message.contains("1 bytes after"), "{}", e.message);
    }

    fn arb_world() -> impl Strategy<Value = Vec<Thing>> {
        proptest::collection::btree_map(
            prop_oneof![0u64..40, 0u64..u64::MAX],
            (
                -1000.0f64..1000.0,
                -1000.0f64..1000.0,
                prop_oneof![Just("#fff"), Just("héllo"), Just("")],
                any::<i64>(),
                any::<f32>(),
                any::<bool>(),
            ),
            0..20,
        )
        .prop_map(|m| {
            m.into_iter()
                .map(|(id, (x, y, c, hp, s, a))| (id, x, y, c, hp, s, a))
                .collect()
        })
    }

    proptest! {
        /// A sequence of worlds, sent as a full snapshot then deltas, with
        /// some ticks skipped (each skip answered with a full snapshot),
        /// always leaves the client holding exactly the server's world.
        #[test]
        fn full_and_delta_round_trip(
            worlds in proptest::collection::vec(arb_world(), 1..8),
            skips in proptest::collection::vec(any::<bool>(), 8),
        ) {
            let mut r = Replica::default();
            let mut last_sent: Option<usize> = None;
            let worlds: Vec<World> = worlds.iter().map(|w| world(w)).collect();
            for (t, w) in worlds.iter().enumerate() {
                if t > 0 && skips[t] {
                    continue; // a slow client missed this tick
                }
                let tick = t as u64 + 1;
                let msg = match last_sent {
                    Some(p) if p + 1 == t => delta(tick, &worlds[p], w),
                    _ => full(tick, w),
                };
                r.apply(&msg, &kinds()).unwrap();
                prop_assert!(r.matches(w), "tick {}: {:?}", tick, r);
                last_sent = Some(t);
            }
        }

        /// Arbitrary bytes never panic the decoders.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Replica::default().apply(&bytes, &kinds());
            let _ = decode_client::<crate::dots::DotInput>(&bytes);
        }
    }
}
