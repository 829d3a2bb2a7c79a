import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinkWatchdog, silenceLimitMs, connectTimeoutMs } from '../js/watchdog.js';

/** Run checks every `every` ms from `from` to `to`; return the first verdict and when. */
function firstVerdict(w, from, to, every = 500, onTick = () => {}) {
  for (let t = from; t <= to; t += every) {
    onTick(t);
    const v = w.check(t);
    if (v) return { at: t, ...v };
  }
  return null;
}

test('silence limit is a number of ticks with a floor', () => {
  assert.equal(silenceLimitMs(20), 3000, '20 Hz: 10 ticks is 500 ms, the 3 s floor wins');
  assert.equal(silenceLimitMs(60), 3000);
  assert.equal(silenceLimitMs(1), 10_000, '1 Hz: 10 ticks');
  assert.equal(silenceLimitMs(null), 3000, 'before welcome: the floor');
  assert.equal(silenceLimitMs(2, { floorMs: 1000, ticks: 4 }), 2000);
});

test('a link that keeps talking is never declared dead', () => {
  const w = new LinkWatchdog({ now: 0 });
  w.opened(30);
  w.setTickRate(20);
  // Snapshots every 50 ms, a few late by up to 2.5 s.
  const v = firstVerdict(w, 100, 60_000, 500, (t) => {
    if (t % 10_000 !== 5000) w.heard(t);
  });
  assert.equal(v, null);
});

test('a half-open link (nothing arrives) is declared dead after ~3 s', () => {
  const w = new LinkWatchdog({ now: 0 });
  w.opened(20);
  w.setTickRate(20);
  for (let t = 50; t <= 10_000; t += 50) w.heard(t);
  const v = firstVerdict(w, 10_000, 20_000, 500);
  assert.equal(v.reason, 'silent');
  assert.equal(v.at, 13_000, 'dead 3 s after the last message');
  assert.ok(v.ms >= 3000);
});

test('a slow server gets a longer silence window', () => {
  const w = new LinkWatchdog({ now: 0 });
  w.heard(10);
  w.setTickRate(1);
  const v = firstVerdict(w, 500, 30_000, 500);
  assert.equal(v.reason, 'silent');
  assert.ok(v.at >= 10_010 && v.at <= 10_600, `at ${v.at}`);
});

test('a socket stuck CONNECTING times out after ~5 s', () => {
  const w = new LinkWatchdog({ now: 1000, connectTimeoutMs: 5000 });
  const v = firstVerdict(w, 1500, 20_000, 500);
  assert.deepEqual(v, { at: 6000, reason: 'connect-timeout', ms: 5000 });
});

test('once open, the connect timeout no longer applies; silence is measured from the open', () => {
  const w = new LinkWatchdog({ now: 0 });
  w.opened(4900);
  const v = firstVerdict(w, 500, 20_000, 500);
  assert.equal(v.reason, 'silent');
  assert.equal(v.at, 8000);
});

test('our own suspension (sleep, throttled tab) is not mistaken for a dead link', () => {
  const w = new LinkWatchdog({ now: 0 });
  w.opened(10);
  w.setTickRate(20);
  w.heard(1000);
  assert.equal(w.check(1500), null);
  // The page did not run for a minute: the first check after waking grants a fresh window...
  assert.equal(w.check(61_500), null);
  // ...in which messages that were waiting are delivered, and all is well;
  w.heard(61_510);
  assert.equal(w.check(62_000), null);
  // or nothing comes and the link is dead 3 s after waking.
  assert.equal(firstVerdict(w, 62_500, 70_000, 500).at, 65_000, "the first check 3 s past the last message");
  // Background-tab throttling to 1 Hz timers still detects a dead link.
  const b = new LinkWatchdog({ now: 0 });
  b.heard(0);
  assert.equal(firstVerdict(b, 1000, 10_000, 1000).at, 3000);
});

test('the connect timeout grows with the attempt number: a slow handshake gets in eventually', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 10, 1000].map((n) => connectTimeoutMs(n)), [5000, 10_000, 20_000, 30_000, 30_000, 30_000, 30_000, 30_000]);
  assert.equal(connectTimeoutMs(-1), 5000);
  assert.equal(connectTimeoutMs(2, { baseMs: 1000, capMs: 3000 }), 3000);
  // A handshake that takes 6 s is abandoned on the first attempt but not on the second.
  const first = new LinkWatchdog({ now: 0, connectTimeoutMs: connectTimeoutMs(0) });
  assert.equal(firstVerdict(first, 500, 6000, 500).reason, 'connect-timeout');
  const second = new LinkWatchdog({ now: 0, connectTimeoutMs: connectTimeoutMs(1) });
  assert.equal(firstVerdict(second, 500, 5500, 500), null);
  second.opened(6000);
  second.heard(6010);
  assert.equal(second.check(6500), null);
});
