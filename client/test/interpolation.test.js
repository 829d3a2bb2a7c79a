import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Interpolator } from '../js/interpolation.js';

/**
 * A snapshot at server tick `tick` (20 Hz: tick n is at 50n ms on the
 * timeline). `time` is the server's wall clock, which the interpolator must
 * not depend on: by default an arbitrary epoch value.
 */
const snap = (tick, players, time = 1.7e12 + tick * 50) => ({ tick, time, players: players.map(([id, x, y]) => ({ id, x, y, color: '#abc' })) });
const byId = (list) => Object.fromEntries(list.map((p) => [p.id, [p.x, p.y]]));

/** Ticks 20 and 21 (1000 and 1050 ms on the timeline), arriving 4000 ms later locally. */
function twoSnapshots() {
  const it = new Interpolator({ tickMs: 50, delayMs: 100 });
  it.push(snap(20, [[1, 0, 0], [2, 100, 100], [3, 50, 50]]), 5000);
  it.push(snap(21, [[1, 10, 20], [2, 100, 100], [4, 300, 300]]), 5050);
  return it;
}
// Local time at which timeline ms T is drawn: T + offset (4000) + delay (100).
const at = (T) => T + 4100;

test('renders delayMs in the past, at the midpoint between the bracketing snapshots', () => {
  const it = twoSnapshots();
  assert.equal(it.renderTime(at(1025)), 1025);
  const p = byId(it.sample(at(1025)));
  assert.deepEqual(p[1], [5, 10]);
  assert.deepEqual(p[2], [100, 100]);
  const q = byId(it.sample(at(1040)));
  assert.ok(Math.abs(q[1][0] - 8) < 1e-9 && Math.abs(q[1][1] - 16) < 1e-9);
});

test('before the first snapshot shows the first; after the last holds the last', () => {
  const it = twoSnapshots();
  assert.deepEqual(byId(it.sample(at(900))), { 1: [0, 0], 2: [100, 100], 3: [50, 50] });
  assert.deepEqual(byId(it.sample(at(1000))), { 1: [0, 0], 2: [100, 100], 3: [50, 50] });
  assert.deepEqual(byId(it.sample(at(1050))), { 1: [10, 20], 2: [100, 100], 4: [300, 300] });
  assert.deepEqual(byId(it.sample(at(5000))), { 1: [10, 20], 2: [100, 100], 4: [300, 300] });
});

test('joining players appear and leaving players vanish when render time reaches them', () => {
  const it = twoSnapshots();
  const mid = byId(it.sample(at(1025)));
  assert.ok(!(4 in mid), 'not drawn before their first snapshot');
  assert.deepEqual(mid[3], [50, 50], 'a leaver stays put until its last snapshot is passed');
  const later = byId(it.sample(at(1051)));
  assert.deepEqual(later[4], [300, 300]);
  assert.ok(!(3 in later));
});

test('empty before any snapshot', () => {
  const it = new Interpolator();
  assert.deepEqual(it.sample(123), []);
});

test('20 Hz snapshots become smooth 60 fps motion', () => {
  const it = new Interpolator({ delayMs: 100 });
  let last = null;
  let frames = 0;
  // A player moving 10 px per 50 ms tick; snapshots arrive with +-10 ms jitter.
  for (let local = 0, tick = 0; local < 2000; local += 1000 / 60) {
    while (tick * 50 + 20 + ((tick * 7) % 21) - 10 <= local) {
      it.push(snap(tick, [[9, 10 + tick * 10, 0]]), tick * 50 + 20 + ((tick * 7) % 21) - 10);
      tick++;
    }
    const p = it.sample(local)[0];
    if (local > 300) {
      const dx = p.x - last;
      assert.ok(dx >= 0 && dx <= 6, `frame step ${dx}`);
      frames += dx > 0 ? 1 : 0;
      last = p.x;
    } else if (p) last = p.x;
  }
  assert.ok(frames > 90, `moving on most frames (${frames})`);
});

test('clock offset: late arrivals do not drag the timeline, earlier ones are adopted', () => {
  const it = new Interpolator({ tickMs: 50, delayMs: 100 });
  it.push(snap(20, []), 5000);
  assert.equal(it.offset, 4000);
  it.push(snap(21, []), 5250); // 200 ms late
  assert.ok(it.offset < 4005, `offset ${it.offset}`);
  it.push(snap(22, []), 5090); // 10 ms faster than ever
  assert.equal(it.offset, 3990);
});

test('duplicates and out-of-order snapshots are ignored', () => {
  const it = twoSnapshots();
  it.push(snap(21, [[1, 999, 999]]), 5060);
  it.push(snap(20, [[1, 999, 999]]), 5061);
  assert.equal(it.snapshots.length, 2);
  assert.deepEqual(byId(it.sample(at(1050)))[1], [10, 20]);
});

test('keeps a bounded buffer and reuses its output objects', () => {
  const it = new Interpolator({ maxSnapshots: 8 });
  for (let i = 0; i < 100; i++) it.push(snap(i, [[1, i, 0], [2, 0, i]]), i * 50 + 10);
  assert.equal(it.snapshots.length, 8);
  const a = it.sample(5000);
  const objs = [...a];
  const b = it.sample(5001);
  assert.equal(a, b, 'same array');
  assert.ok(b.every((o, i) => o === objs[i]), 'same objects');
  assert.equal(b.length, 2);
  assert.ok(it.recent.length <= 21, `offset samples are pruned to the last second (${it.recent.length})`);
});

/** Frames at 60 fps of one player moving 10 px per tick, snapshots with jitter; `wall(tick)` is the server's clock. */
function movingPlayer(wall, { tickMs = 50, step = 10 } = {}) {
  const it = new Interpolator({ tickMs, delayMs: 2 * tickMs });
  const xs = [];
  for (let local = 0, tick = 0; local < 4000; local += 1000 / 60) {
    const arrives = (n) => n * tickMs + 20 + ((n * 7) % 11);
    while (arrives(tick) <= local) {
      it.push(snap(tick, [[9, 10 + tick * step, 0]], wall(tick)), arrives(tick));
      tick++;
    }
    const p = it.sample(local)[0];
    xs.push(p ? p.x : null);
  }
  return xs;
}

test('the server wall clock stepping (NTP) does not disturb interpolation: ticks are the timeline', () => {
  const steady = movingPlayer((tick) => 1.7e12 + tick * 50);
  // Halfway, the server clock steps back 5 s, later forward 30 s; ticks advance normally.
  const stepped = movingPlayer((tick) => 1.7e12 + tick * 50 + (tick >= 40 ? -5000 : 0) + (tick >= 60 ? 30_000 : 0));
  assert.deepEqual(stepped, steady, 'exactly the same picture');
  // And that picture is smooth: once started, the dot advances on every frame, never backwards, never jumps.
  const moving = steady.slice(30, -30);
  for (let i = 1; i < moving.length; i++) {
    const dx = moving[i] - moving[i - 1];
    assert.ok(dx > 0 && dx <= 6, `frame ${i}: step ${dx}`); // ~3.3 px nominal, jitter nudges the offset
  }
});

test('the timeline follows the tick rate', () => {
  // 10 Hz: a tick is 100 ms, so a 200 ms delay is two ticks.
  const it = new Interpolator({ tickMs: 100, delayMs: 200 });
  it.push(snap(10, [[1, 0, 0]]), 1000);
  it.push(snap(11, [[1, 10, 0]]), 1100);
  assert.equal(it.renderTime(1250), 1050);
  assert.deepEqual(byId(it.sample(1250))[1], [5, 0]);
});

test('after a server stall the tick timeline falls behind: the offset jumps within a second, not drifts for seconds', () => {
  const it = new Interpolator({ tickMs: 50, delayMs: 100 });
  // 20 Hz, 20 ms latency +-5 ms jitter; a player moving 10 px per tick.
  const jitter = (n) => ((n * 7) % 11) - 5;
  let tick = 0;
  let local = 0;
  const pushUntil = (end) => {
    for (; local < end; local += 50, tick++) it.push(snap(tick, [[9, tick * 10, 0]]), local + 20 + jitter(tick));
  };
  pushUntil(3000);
  const before = it.offset;
  // The server stalls for 2 s, then skips ahead: tick numbers continue from
  // where they were while local time moved on, so every snapshot now arrives
  // 2 s later relative to its tick.
  local += 2000;
  pushUntil(local + 50);
  assert.ok(it.offset - before < 100, `not at once: the first arrival after a gap may itself be late (${it.offset - before})`);
  pushUntil(local + 650);
  assert.ok(Math.abs(it.offset - (before + 2000)) <= 10, `jumped to the new timeline: ${before} -> ${it.offset}`);
  // And others are interpolated again (render time between two snapshots), on every frame.
  let last = null;
  const from = local;
  for (let now = from; now < from + 500; now += 1000 / 60) {
    const newest = it.snapshots.at(-1).t;
    assert.ok(it.renderTime(now) < newest, `render time ${it.renderTime(now)} before the newest snapshot ${newest}`);
    while (local <= now) pushUntil(local + 50);
    const x = it.sample(now)[0].x;
    if (last !== null) assert.ok(x > last, `moving on every frame (${last} -> ${x})`);
    last = x;
  }
});

test('a single late snapshot, or a burst shorter than the window, does not make the offset jump', () => {
  const it = new Interpolator({ tickMs: 50, delayMs: 100 });
  for (let n = 0; n < 40; n++) it.push(snap(n, []), n * 50 + 20);
  assert.equal(it.offset, 20);
  // 300 ms of 200 ms extra latency (a Wi-Fi hiccup), then back to normal.
  for (let n = 40; n < 46; n++) it.push(snap(n, []), n * 50 + 220);
  assert.ok(it.offset < 50, `only drifted, no jump: offset ${it.offset}`);
  for (let n = 46; n < 80; n++) it.push(snap(n, []), n * 50 + 20);
  assert.equal(it.offset, 20);
});
