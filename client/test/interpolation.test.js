import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Interpolator } from '../js/interpolation.js';

const snap = (tick, time, players) => ({ tick, time, players: players.map(([id, x, y]) => ({ id, x, y, color: '#abc' })) });
const byId = (list) => Object.fromEntries(list.map((p) => [p.id, [p.x, p.y]]));

/** Two snapshots 50 ms apart on the server, arriving 4000 ms later locally. */
function twoSnapshots() {
  const it = new Interpolator({ delayMs: 100 });
  it.push(snap(1, 1000, [[1, 0, 0], [2, 100, 100], [3, 50, 50]]), 5000);
  it.push(snap(2, 1050, [[1, 10, 20], [2, 100, 100], [4, 300, 300]]), 5050);
  return it;
}
// Local time at which server time T is drawn: T + offset (4000) + delay (100).
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
  assert.deepEqual(it.latest(), []);
});

test('20 Hz snapshots become smooth 60 fps motion', () => {
  const it = new Interpolator({ delayMs: 100 });
  let last = null;
  let frames = 0;
  // A player moving 10 px per 50 ms tick; snapshots arrive with +-10 ms jitter.
  for (let local = 0, tick = 0; local < 2000; local += 1000 / 60) {
    while (tick * 50 + 20 + ((tick * 7) % 21) - 10 <= local) {
      it.push(snap(tick, tick * 50, [[9, 10 + tick * 10, 0]]), tick * 50 + 20 + ((tick * 7) % 21) - 10);
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
  const it = new Interpolator({ delayMs: 100 });
  it.push(snap(1, 1000, []), 5000);
  assert.equal(it.offset, 4000);
  it.push(snap(2, 1050, []), 5250); // 200 ms late
  assert.ok(it.offset < 4005, `offset ${it.offset}`);
  it.push(snap(3, 1100, []), 5090); // 10 ms faster than ever
  assert.equal(it.offset, 3990);
});

test('duplicates and out-of-order snapshots are ignored', () => {
  const it = twoSnapshots();
  it.push(snap(2, 1050, [[1, 999, 999]]), 5060);
  it.push(snap(1, 1000, [[1, 999, 999]]), 5061);
  assert.equal(it.snapshots.length, 2);
  assert.deepEqual(byId(it.sample(at(1050)))[1], [10, 20]);
});

test('keeps a bounded buffer and reuses its output objects', () => {
  const it = new Interpolator({ maxSnapshots: 8 });
  for (let i = 0; i < 100; i++) it.push(snap(i, i * 50, [[1, i, 0], [2, 0, i]]), i * 50 + 10);
  assert.equal(it.snapshots.length, 8);
  const a = it.sample(5000);
  const objs = [...a];
  const b = it.sample(5001);
  assert.equal(a, b, 'same array');
  assert.ok(b.every((o, i) => o === objs[i]), 'same objects');
  assert.equal(it.latest().length, 2);
});
