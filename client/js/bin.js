/**
 * `playfield.v1.bin`: the binary encoding of the native protocol. Decodes
 * snapshots into the client's replica of the world and encodes binary
 * `input` and `ping` messages. Pure module: no DOM, importable from node.
 *
 * A line-by-line port of the reference decoder, `Replica::apply` in
 * src/protocol/bin.rs: same records, same checks in the same order, same
 * error kinds (the Rust variant names) and messages. Both decoders are
 * checked against the fixtures the Rust encoder writes
 * (client/test/fixtures/bin-snapshots.json), including malformed and
 * randomly mutated messages, so they cannot drift apart unnoticed.
 *
 * Snapshot layout: type (0x01, or 0x02 when the client's own exact position
 * follows the header), tick, ack, base (varints: base 0 = full snapshot,
 * n = delta against tick `tick - n`), [own x, y as f64 LE], then records to
 * the end. A record's first byte is op (top 3 bits) | id gap (low 5 bits;
 * 31 = a varint follows and is added). Positions are in 1/8 px units.
 */
import { ProtocolError } from './protocol.js';

/** Server → client message types. */
export const MSG_SNAPSHOT = 0x01;
export const MSG_SNAPSHOT_OWN = 0x02;
/** Client → server message types. */
export const MSG_INPUT = 0x01;
export const MSG_PING = 0x02;

/** Record op codes (top three bits of a record's first byte). */
export const OP = Object.freeze({
  MOVE: 0, MOVE_X: 1, MOVE_Y: 2, UPDATE: 3, SPAWN: 4, DESPAWN: 5, RESET: 6,
});

/** Grid units per px: positions other than our own travel as whole 1/8 px. */
export const UNITS_PER_PX = 8;

const GAP_INLINE = 31;
const U64_MAX = (1n << 64n) - 1n;
const SAFE = Number.MAX_SAFE_INTEGER;

/**
 * A snapshot this client cannot apply. `kind` is the reference decoder's
 * `DecodeError` variant (`Truncated`, `VarintTooLong`, `UnknownMessage`,
 * `UnknownOp`, `UnknownEntity`, `IdOverflow`, `BaseMismatch`, `BadMask`,
 * `InvalidUtf8`) or, only here, `UnsafeInteger`: a tick, id or position the
 * server sent that a JavaScript number cannot hold exactly (beyond 2^53).
 * Rust accepts those; we refuse rather than silently round them.
 */
export class BinDecodeError extends ProtocolError {
  /**
   * @param {string} kind
   * @param {string} message
   * @param {object} [detail]  the variant's data (e.g. `{have, needs}`)
   */
  constructor(kind, message, detail = {}) {
    super(message);
    this.name = 'BinDecodeError';
    this.kind = kind;
    this.detail = detail;
  }
}

const truncated = () => new BinDecodeError('Truncated', 'message ends in the middle of a value');
const unsafe = (what, v) => new BinDecodeError('UnsafeInteger',
  `${what} ${v} is beyond 2^53: a JavaScript number cannot hold it exactly`, { value: v });

/**
 * Strict UTF-8, as Rust's `str::from_utf8`: malformed bytes are an error,
 * not U+FFFD, and a leading byte-order mark is kept (it is part of the
 * string the server sent), not swallowed.
 */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Reads the primitive values of the protocol from one message. Integers
 * come back as Numbers while they are safe, else as BigInts that each
 * caller decides about (refuse, or keep, as int fields do).
 */
class Reader {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    this.b = bytes;
    this.pos = 0;
    this.view = null; // a DataView, made on the first float
  }

  isEmpty() {
    return this.pos >= this.b.length;
  }

  u8() {
    if (this.pos >= this.b.length) throw truncated();
    return this.b[this.pos++];
  }

  i8() {
    const v = this.u8();
    return v > 127 ? v - 256 : v;
  }

  /**
   * Unsigned LEB128, at most 10 bytes (a u64): the Rust rule, byte for byte,
   * so over-long and over-large varints fail the same way. Up to seven
   * bytes (49 bits) sum exactly in a Number; longer ones are redone in BigInt.
   * @returns {number|bigint}
   */
  varint() {
    const start = this.pos;
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 7; i++) {
      const b = this.u8();
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
    }
    this.pos = start;
    return this._bigVarint();
  }

  _bigVarint() {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const b = this.u8();
      if (shift === 63n && b > 1) throw new BinDecodeError('VarintTooLong', 'varint longer than 10 bytes');
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v <= SAFE ? Number(v) : v;
    }
    throw new BinDecodeError('VarintTooLong', 'varint longer than 10 bytes');
  }

  /** Zigzag varint: an i64, as a Number while safe, else a BigInt. */
  zigzag() {
    const u = this.varint();
    if (typeof u === 'number') return u % 2 === 0 ? u / 2 : -(u + 1) / 2;
    const s = (u >> 1n) ^ -(u & 1n);
    return s >= -SAFE && s <= SAFE ? Number(s) : s;
  }

  /** A coordinate in grid units: must be a safe integer. */
  coord() {
    const v = this.zigzag();
    if (typeof v !== 'number') throw unsafe('position', v);
    return v;
  }

  _view() {
    this.view ??= new DataView(this.b.buffer, this.b.byteOffset, this.b.byteLength);
    return this.view;
  }

  f64() {
    if (this.pos + 8 > this.b.length) throw truncated();
    const v = this._view().getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  f32() {
    if (this.pos + 4 > this.b.length) throw truncated();
    const v = this._view().getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  str() {
    const len = this.varint();
    if (typeof len !== 'number' || this.pos + len > this.b.length) throw truncated();
    const bytes = this.b.subarray(this.pos, this.pos + len);
    this.pos += len;
    try {
      return utf8.decode(bytes);
    } catch {
      throw new BinDecodeError('InvalidUtf8', 'string field is not UTF-8');
    }
  }

  /**
   * One field value. Ints beyond 2^53 stay exact as BigInts: a game may
   * replicate any i64, and a wrong number would be worse than an odd type.
   * @param {string} kind
   */
  value(kind) {
    switch (kind) {
      case 'bool': return this.u8() !== 0;
      case 'int': return this.zigzag();
      case 'float': return this.f32();
      default: return this.str();
    }
  }
}

/** Whether bit `i` of a change mask is set (masks may exceed 32 bits). */
function hasBit(mask, i) {
  if (typeof mask === 'bigint') return ((mask >> BigInt(i)) & 1n) === 1n;
  return Math.floor(mask / 2 ** i) % 2 === 1;
}

/**
 * The snapshot header: what came with the message, besides the records.
 * @typedef {{type: number, tick: number, ack: number, base: number, own: {x: number, y: number}|null}} Header
 */

/**
 * One entity as the client holds it: position in grid units, field values
 * in schema order.
 * @typedef {{x: number, y: number, fields: any[]}} RemoteEntity
 */

/**
 * The client's copy of the world, kept up to date by applying snapshots in
 * order; what `Replica` is on the Rust side.
 *
 * One deliberate difference: when a message fails to decode, the replica
 * forgets its tick, so nothing but a full snapshot applies afterwards. The
 * failed message may have been half applied, and deltas on top of a
 * half-applied one would be quietly wrong; the caller reconnects anyway.
 */
export class BinReplica {
  /** @param {{fields: {name: string, kind: string}[]}} schema */
  constructor(schema) {
    this.schema = schema;
    this.kinds = schema.fields.map((f) => f.kind);
    this.names = schema.fields.map((f) => f.name);
    /** The tick of the last snapshot applied; null before the first (or after an error). */
    this.tick = null;
    /** @type {Map<number, RemoteEntity>} by entity id */
    this.entities = new Map();
    /** Our own entity's exact position as last sent, in px; null until sent (and after a full snapshot without it). */
    this.own = null;
  }

  /**
   * Applies one snapshot message.
   * @param {ArrayBuffer|Uint8Array} data
   * @returns {Header}
   * @throws {BinDecodeError} (a ProtocolError) when the message is malformed
   *   or does not apply to what the replica holds
   */
  apply(data) {
    try {
      return this._apply(data instanceof Uint8Array ? data : new Uint8Array(data));
    } catch (err) {
      this.tick = null;
      throw err;
    }
  }

  _apply(bytes) {
    const r = new Reader(bytes);
    const type = r.u8();
    if (type !== MSG_SNAPSHOT && type !== MSG_SNAPSHOT_OWN) {
      throw new BinDecodeError('UnknownMessage', `unknown message type 0x${type.toString(16).padStart(2, '0')}`, { type });
    }
    const tick = r.varint();
    const ackRaw = r.varint();
    // Rust reads ack as u32, saturating: so do we.
    const ack = typeof ackRaw === 'number' && ackRaw <= 0xffffffff ? ackRaw : 0xffffffff;
    const base = r.varint();
    const own = type === MSG_SNAPSHOT_OWN ? { x: r.f64(), y: r.f64() } : null;
    if (typeof tick !== 'number') throw unsafe('tick', tick);
    if (base === 0) {
      this.entities.clear();
      this.own = null;
    } else {
      // base > tick (a BigInt base is always > a safe tick) needs tick 0 in Rust's words.
      const needs = typeof base === 'number' && base <= tick ? tick - base : null;
      if (needs === null || this.tick !== needs) {
        const have = this.tick;
        throw new BinDecodeError('BaseMismatch',
          `delta against tick ${needs ?? 0}, but the client holds ${have === null ? 'no tick' : `tick ${have}`}`,
          { have, needs: needs ?? 0 });
      }
    }
    const { kinds, entities } = this;
    const nkinds = kinds.length;
    let next = 0;
    while (!r.isEmpty()) {
      const head = r.u8();
      const op = head >> 5;
      let gap = head & 0x1f;
      if (op === OP.RESET) {
        next = 0;
        continue;
      }
      if (gap === GAP_INLINE) gap = addGap(GAP_INLINE, r.varint());
      const id = entityId(next, gap);
      next = id + 1;
      switch (op) {
        case OP.SPAWN: {
          const x = r.coord();
          const y = r.coord();
          const fields = new Array(nkinds);
          for (let k = 0; k < nkinds; k++) fields[k] = r.value(kinds[k]);
          entities.set(id, { x, y, fields });
          break;
        }
        case OP.DESPAWN:
          if (!entities.delete(id)) throw unknownEntity(id);
          break;
        case OP.MOVE:
        case OP.MOVE_X:
        case OP.MOVE_Y: {
          const dx = op === OP.MOVE_Y ? 0 : r.i8();
          const dy = op === OP.MOVE_X ? 0 : r.i8();
          const e = entities.get(id);
          if (!e) throw unknownEntity(id);
          const x = e.x + dx;
          const y = e.y + dy;
          if (!Number.isSafeInteger(x) || !Number.isSafeInteger(y)) throw unsafe('position', Number.isSafeInteger(x) ? y : x);
          e.x = x;
          e.y = y;
          break;
        }
        case OP.UPDATE: {
          const mask = r.varint();
          // Bit 0 is the position, bit k + 1 field k: nothing above that.
          if (typeof mask === 'bigint' ? mask >> BigInt(nkinds + 1) !== 0n : mask >= 2 ** (nkinds + 1)) {
            throw new BinDecodeError('BadMask', `change mask 0x${mask.toString(16)} names fields the schema lacks`, { mask });
          }
          const e = entities.get(id);
          if (!e) throw unknownEntity(id);
          if (hasBit(mask, 0)) {
            e.x = r.coord();
            e.y = r.coord();
          }
          for (let k = 0; k < nkinds; k++) {
            if (hasBit(mask, k + 1)) e.fields[k] = r.value(kinds[k]);
          }
          break;
        }
        default:
          throw new BinDecodeError('UnknownOp', `unknown record op ${op}`, { op });
      }
    }
    if (own) this.own = own;
    this.tick = tick;
    return { type, tick, ack, base, own };
  }

  /**
   * The entities as plain objects in px, fields by name: `{id, x, y, ...}`.
   * New objects every call: the interpolator keeps each snapshot's list
   * while later snapshots change the replica.
   * @param {number|null} ownId  our entity: its exact position is used when known
   */
  list(ownId = null) {
    const out = new Array(this.entities.size);
    const { names } = this;
    let i = 0;
    for (const [id, e] of this.entities) {
      const o = { id, x: e.x / UNITS_PER_PX, y: e.y / UNITS_PER_PX };
      if (id === ownId && this.own) {
        o.x = this.own.x;
        o.y = this.own.y;
      }
      for (let k = 0; k < names.length; k++) o[names[k]] = e.fields[k];
      out[i++] = o;
    }
    return out;
  }
}

function unknownEntity(id) {
  return new BinDecodeError('UnknownEntity', `record for unknown entity ${id}`, { id });
}

/** 31 + the escaped gap varint, as Rust's checked_add. */
function addGap(inline, extra) {
  if (typeof extra === 'number' && extra <= SAFE - inline) return inline + extra;
  const g = BigInt(inline) + BigInt(extra);
  if (g > U64_MAX) throw new BinDecodeError('IdOverflow', 'entity id overflows 64 bits');
  return g;
}

/** next + gap, as Rust's checked_add; ids beyond 2^53 are refused here. */
function entityId(next, gap) {
  if (typeof gap === 'number' && next + gap <= SAFE) return next + gap;
  const id = BigInt(next) + BigInt(gap);
  if (id > U64_MAX) throw new BinDecodeError('IdOverflow', 'entity id overflows 64 bits');
  throw unsafe('entity id', id);
}

// ------------------------------------------------------------ client → server

/** Appends `v` (a non-negative safe integer) as an unsigned LEB128 varint. */
function putVarint(out, v) {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varint out of range: ${v}`);
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/**
 * A binary `input`: 0x01, seq (varint), then the dot game's input as
 * postcard encodes it: x and y as f64 little-endian.
 * @param {number} seq
 * @param {{x: number, y: number}} dir
 * @returns {Uint8Array}
 */
export function encodeInputBin(seq, dir) {
  const head = [MSG_INPUT];
  putVarint(head, seq);
  const out = new Uint8Array(head.length + 16);
  out.set(head);
  const view = new DataView(out.buffer);
  view.setFloat64(head.length, dir.x, true);
  view.setFloat64(head.length + 8, dir.y, true);
  return out;
}

/**
 * A binary `ping`: 0x02, id (varint). The server answers with a JSON `pong`.
 * @param {number} id
 * @returns {Uint8Array}
 */
export function encodePingBin(id) {
  const out = [MSG_PING];
  putVarint(out, id);
  return Uint8Array.from(out);
}
