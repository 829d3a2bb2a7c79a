/**
 * bin.js against the fixtures the Rust encoder writes
 * (tests/bin_fixtures.rs → fixtures/bin-snapshots.json): every snapshot step
 * must leave the replica in the stated state, every malformed message must
 * fail with the reference decoder's error, every mutated message must have
 * the reference outcome, and random bytes must only ever raise ProtocolError.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  BinReplica, BinDecodeError, encodeInputBin, encodePingBin, OP, MSG_SNAPSHOT, MSG_SNAPSHOT_OWN,
} from '../js/bin.js';
import { ProtocolError } from '../js/protocol.js';

const FIXTURE = JSON.parse(readFileSync(new URL('./fixtures/bin-snapshots.json', import.meta.url), 'utf8'));
const SCHEMA = FIXTURE.schema;

const unhex = (s) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** A fixture number: JSON numbers, or strings for what JSON cannot hold. */
function num(v) {
  if (typeof v !== 'string') return v;
  if (v === 'NaN' || v === 'Infinity' || v === '-Infinity') return Number(v);
  return BigInt(v);
}

function sameValue(actual, expected, what, kind = 'int') {
  if (kind === 'str' || kind === 'bool') return assert.equal(actual, expected, what);
  const e = num(expected);
  if (typeof e === 'bigint') {
    assert.equal(typeof actual, 'bigint', `${what}: a BigInt beyond 2^53`);
    assert.equal(actual, e, what);
  } else {
    // Object.is: NaN equals NaN, and -0 is not 0.
    assert.ok(Object.is(actual, e), `${what}: got ${String(actual)}, expected ${String(e)}`);
  }
}

function sameOwn(actual, expected, what) {
  if (expected === null) return assert.equal(actual, null, what);
  assert.ok(actual, `${what}: expected an own position`);
  sameValue(actual.x, expected[0], `${what}.x`);
  sameValue(actual.y, expected[1], `${what}.y`);
}

function sameEntities(replica, expected, what) {
  const ids = [...replica.entities.keys()].sort((a, b) => a - b);
  assert.deepEqual(ids, expected.map((e) => num(e.id)), `${what}: entity ids`);
  for (const want of expected) {
    const got = replica.entities.get(num(want.id));
    sameValue(got.x, want.x, `${what}: entity ${want.id} x`);
    sameValue(got.y, want.y, `${what}: entity ${want.id} y`);
    SCHEMA.fields.forEach((f, k) => sameValue(got.fields[k], want.fields[f.name], `${what}: entity ${want.id} ${f.name}`, f.kind));
  }
}

/** A replica that has applied the first `n` steps. */
function replicaAfter(n) {
  const r = new BinReplica(SCHEMA);
  for (const step of FIXTURE.steps.slice(0, n)) r.apply(unhex(step.hex));
  return r;
}

/** Header bytes for hand-made messages. */
function header(tick, base, { ack = 0, type = MSG_SNAPSHOT } = {}) {
  const out = [type];
  for (const v of [tick, ack, base]) {
    let x = v;
    while (x >= 0x80) { out.push((x % 0x80) | 0x80); x = Math.floor(x / 0x80); }
    out.push(x);
  }
  return out;
}

test('the fixture covers every field kind', () => {
  assert.deepEqual(SCHEMA.fields.map((f) => f.kind).sort(), ['bool', 'float', 'int', 'str']);
  assert.ok(FIXTURE.steps.length >= 10 && FIXTURE.errors.length >= 20 && FIXTURE.mutations.length >= 100);
});

test('every fixture step leaves the replica in the stated state', () => {
  const r = new BinReplica(SCHEMA);
  for (const step of FIXTURE.steps) {
    const h = r.apply(unhex(step.hex));
    assert.equal(h.tick, step.tick, step.name);
    assert.equal(h.ack, step.ack, step.name);
    assert.equal(h.base, step.base, step.name);
    assert.equal(h.type, step.header_own ? MSG_SNAPSHOT_OWN : MSG_SNAPSHOT, step.name);
    sameOwn(h.own, step.header_own, `${step.name}: header own`);
    sameOwn(r.own, step.own, `${step.name}: own`);
    assert.equal(r.tick, step.tick, step.name);
    sameEntities(r, step.entities, step.name);
  }
});

test('list() gives px, fields by name, and our own entity at its exact position', () => {
  const r = replicaAfter(1); // the first step: entity 1 is ours, at 100.1 exactly, 100.125 on the grid
  const byId = new Map(r.list(1).map((p) => [p.id, p]));
  assert.deepEqual(byId.get(1), { id: 1, x: 100.1, y: 80, color: '#ff0000', hp: 10, speed: 1.5, alive: true });
  assert.equal(new Map(r.list(null).map((p) => [p.id, p])).get(1).x, 100.125);
  assert.deepEqual(byId.get(2), { id: 2, x: 250, y: 250, color: '', hp: 0, speed: 0, alive: false });
  assert.equal(byId.get(5).x, -3);
  assert.equal(byId.get(5).color, '\ufeffhéllo ✓', 'a leading byte-order mark is part of the string');
  // Fresh objects every call: an old list is not changed by later snapshots.
  const before = r.list(null);
  r.apply(unhex(FIXTURE.steps[1].hex));
  assert.equal(before.find((p) => p.id === 2).y, 250);
  assert.equal(r.list(null).find((p) => p.id === 2).y, 260);
});

test('malformed messages fail like the reference decoder', () => {
  for (const c of FIXTURE.errors) {
    const r = new BinReplica(SCHEMA);
    for (const s of c.setup) r.apply(unhex(s));
    assert.throws(() => r.apply(unhex(c.hex)), (err) => {
      assert.ok(err instanceof ProtocolError && err instanceof BinDecodeError, `${c.name}: ${err}`);
      assert.equal(err.kind, c.error, c.name);
      if (c.error === 'BaseMismatch') {
        // Same data; the wording of "holds" differs (Rust prints Some(5) / None).
        const [, needs, have] = c.message.match(/tick (\d+), but the client holds (?:Some\((\d+)\)|None)/);
        assert.equal(err.detail.needs, Number(needs), c.name);
        assert.equal(err.detail.have, have === undefined ? null : Number(have), c.name);
        assert.match(err.message, new RegExp(`^delta against tick ${needs}, but the client holds ${have === undefined ? 'no tick' : `tick ${have}`}$`));
      } else {
        assert.equal(err.message, c.message, c.name);
      }
      return true;
    }, c.name);
  }
});

test('mutated messages have the reference outcome', () => {
  let ok = 0;
  for (const c of FIXTURE.mutations) {
    const r = replicaAfter(c.step);
    const what = `mutation of step ${c.step}: ${c.hex}`;
    if (c.error === null) {
      const h = r.apply(unhex(c.hex));
      assert.equal(h.tick, c.tick, what);
      assert.equal(h.ack, c.ack, what);
      sameOwn(r.own, c.own, what);
      sameEntities(r, c.entities, what);
      ok++;
    } else {
      assert.throws(() => r.apply(unhex(c.hex)), (err) => err instanceof BinDecodeError && err.kind === c.error, `${what}: ${c.error}`);
    }
  }
  assert.ok(ok > 0);
});

test('client messages are byte for byte what the server decodes', () => {
  for (const i of FIXTURE.client.inputs) {
    assert.equal(hex(encodeInputBin(i.seq, { x: num(i.x), y: num(i.y) })), i.hex, `input ${i.seq}`);
  }
  for (const p of FIXTURE.client.pings) assert.equal(hex(encodePingBin(p.id)), p.hex, `ping ${p.id}`);
  // The example from the protocol docs: seq 7, (1, -0.5).
  assert.equal(hex(encodeInputBin(7, { x: 1, y: -0.5 })), '0107000000000000f03f000000000000e0bf');
  assert.equal(hex(encodePingBin(300)), '02ac02');
  assert.throws(() => encodeInputBin(-1, { x: 0, y: 0 }), RangeError);
  assert.throws(() => encodePingBin(1.5), RangeError);
});

test('what JavaScript numbers cannot hold is refused, not rounded', () => {
  // tick = 2^64 - 1: Rust takes it, we cannot compare it exactly.
  const r = new BinReplica(SCHEMA);
  assert.throws(() => r.apply(Uint8Array.from([1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0])),
    (e) => e instanceof ProtocolError && e.kind === 'UnsafeInteger' && /tick 18446744073709551615/.test(e.message));
  // An entity id of 2^53 (gap escape: 31 + (2^53 - 31)).
  const id = [...header(1, 0), OP.DESPAWN << 5 | 31, ...varintBytes(2n ** 53n - 31n)];
  assert.throws(() => r.apply(Uint8Array.from(id)), (e) => e.kind === 'UnsafeInteger' && /entity id 9007199254740992/.test(e.message));
  // 2^53 - 1 is fine (and unknown here).
  const okId = [...header(1, 0), OP.DESPAWN << 5 | 31, ...varintBytes(2n ** 53n - 32n)];
  assert.throws(() => r.apply(Uint8Array.from(okId)), (e) => e.kind === 'UnknownEntity' && e.detail.id === 2 ** 53 - 1);
  // A position of 2^53 units (zigzag 2^54).
  const pos = [...header(1, 0), OP.SPAWN << 5, ...varintBytes(2n ** 54n), 0];
  assert.throws(() => r.apply(Uint8Array.from(pos)), (e) => e.kind === 'UnsafeInteger' && /position/.test(e.message));
  // A MOVE that leaves the safe range.
  const edge = new BinReplica({ fields: [] });
  edge.apply(Uint8Array.from([...header(1, 0), OP.SPAWN << 5, ...varintBytes(2n * (2n ** 53n - 1n)), 0]));
  assert.equal(edge.entities.get(0).x, 2 ** 53 - 1);
  assert.throws(() => edge.apply(Uint8Array.from([...header(2, 1), OP.MOVE_X << 5, 1])), (e) => e.kind === 'UnsafeInteger');
  // An ack beyond u32 saturates, as in Rust.
  assert.equal(new BinReplica(SCHEMA).apply(Uint8Array.from(header(1, 0, { ack: 2 ** 40 }))).ack, 0xffffffff);
});

function varintBytes(v) {
  const out = [];
  let x = BigInt(v);
  while (x >= 0x80n) { out.push(Number(x & 0x7fn) | 0x80); x >>= 7n; }
  out.push(Number(x));
  return out;
}

test('after an error only a full snapshot applies', () => {
  const r = replicaAfter(3);
  const tick = r.tick;
  assert.throws(() => r.apply(Uint8Array.from([...header(tick + 1, 1), 7 << 5])), (e) => e.kind === 'UnknownOp');
  assert.equal(r.tick, null, 'the replica forgot its tick');
  assert.throws(() => r.apply(Uint8Array.from(header(tick + 1, 1))), (e) => e.kind === 'BaseMismatch');
  r.apply(Uint8Array.from(header(tick + 5, 0)));
  assert.equal(r.tick, tick + 5);
  assert.equal(r.entities.size, 0);
});

test('takes ArrayBuffers and Uint8Arrays that are views into larger buffers', () => {
  const msg = unhex(FIXTURE.steps[0].hex);
  const big = new Uint8Array(msg.length + 5);
  big.set(msg, 3);
  const a = new BinReplica(SCHEMA);
  a.apply(big.subarray(3, 3 + msg.length)); // own x/y are f64 at an odd offset
  assert.equal(a.own.x, 100.1);
  const b = new BinReplica(SCHEMA);
  b.apply(msg.slice().buffer);
  assert.deepEqual(b.list(1), a.list(1));
});

/** mulberry32: a tiny seeded PRNG, so a failing fuzz case can be replayed. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Whatever decoded is well formed: safe integer positions, values of their kind. */
function checkInvariants(r, what) {
  for (const [id, e] of r.entities) {
    assert.ok(Number.isSafeInteger(id) && id >= 0, `${what}: id ${id}`);
    assert.ok(Number.isSafeInteger(e.x) && Number.isSafeInteger(e.y), `${what}: position of ${id}`);
    assert.equal(e.fields.length, SCHEMA.fields.length, what);
    SCHEMA.fields.forEach((f, k) => {
      const v = e.fields[k];
      const ok = { bool: typeof v === 'boolean', int: Number.isSafeInteger(v) || typeof v === 'bigint', float: typeof v === 'number', str: typeof v === 'string' }[f.kind];
      assert.ok(ok, `${what}: ${f.name} of ${id} is ${typeof v}`);
    });
  }
}

/** Applies `bytes`; only a ProtocolError may come out. */
function survive(r, bytes, what) {
  try {
    r.apply(bytes);
    checkInvariants(r, what);
    return true;
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw new Error(`${what}: threw ${err?.name}: ${err?.message}`, { cause: err });
    assert.ok(err instanceof BinDecodeError && typeof err.kind === 'string' && err.message.length > 0, what);
    return false;
  }
}

test('fuzz: random bytes only ever raise ProtocolError', () => {
  const rand = rng(0xb1a5);
  const steps = FIXTURE.steps.length;
  let decoded = 0;
  for (let i = 0; i < 4000; i++) {
    const len = Math.floor(rand() * 48);
    const bytes = Uint8Array.from({ length: len }, () => Math.floor(rand() * 256));
    // Half of them start like a snapshot, so the records get exercised too.
    if (len > 4 && rand() < 0.5) bytes.set([1 + Math.floor(rand() * 2), 1 + Math.floor(rand() * 400) % 128, 0, rand() < 0.5 ? 0 : 1]);
    if (survive(replicaAfter(Math.floor(rand() * steps)), bytes, `random #${i} ${hex(bytes)}`)) decoded++;
  }
  assert.ok(decoded > 0, 'some random messages decode');
});

test('fuzz: mutated fixture messages only ever raise ProtocolError', () => {
  const rand = rng(0x5eed);
  const pick = (n) => Math.floor(rand() * n);
  const states = FIXTURE.steps.map((_, k) => k);
  let decoded = 0;
  for (let i = 0; i < 3000; i++) {
    const step = pick(states.length);
    const m = [...unhex(FIXTURE.steps[step].hex)];
    for (let n = 1 + pick(4); n > 0; n--) {
      switch (pick(6)) {
        case 0: if (m.length) m[pick(m.length)] ^= 1 << pick(8); break;
        case 1: if (m.length) m[pick(m.length)] = pick(256); break;
        case 2: m.splice(pick(m.length + 1), 0, pick(256)); break;
        case 3: if (m.length) m.splice(pick(m.length), 1); break;
        case 4: m.length = pick(m.length + 1); break;
        default: m.push(...unhex(FIXTURE.steps[pick(states.length)].hex).subarray(pick(8)));
      }
    }
    if (survive(replicaAfter(step), Uint8Array.from(m), `mutation #${i} of step ${step}: ${hex(m)}`)) decoded++;
  }
  assert.ok(decoded > 0, 'some mutations decode');
});
