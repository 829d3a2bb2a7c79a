import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff } from '../js/backoff.js';

test('ceiling doubles from the base and is capped', () => {
  const b = new Backoff({ base: 500, factor: 2, cap: 10_000 });
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 50].map((n) => b.ceiling(n)), [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
});

test('delays grow, stay within [ceiling/2, ceiling] and never exceed the cap', () => {
  for (const r of [0, 0.5, 0.999999]) {
    const b = new Backoff({ base: 500, cap: 10_000, random: () => r });
    let prev = 0;
    for (let n = 0; n < 12; n++) {
      const ceil = b.ceiling(n);
      const d = b.next();
      assert.ok(d >= ceil / 2 && d <= ceil, `attempt ${n}: ${d} not in [${ceil / 2}, ${ceil}]`);
      assert.ok(d >= prev, 'non-decreasing with a fixed random value');
      assert.ok(d <= 10_000);
      prev = d;
    }
  }
});

test('jitter spreads delays across the allowed range', () => {
  const b = new Backoff({ base: 1000, cap: 1000 });
  const seen = new Set();
  for (let i = 0; i < 200; i++) {
    const d = b.next();
    assert.ok(d >= 500 && d <= 1000);
    seen.add(Math.floor(d / 100));
  }
  assert.ok(seen.size >= 4, `expected spread, saw buckets ${[...seen]}`);
});

test('reset starts over from the base', () => {
  const b = new Backoff({ base: 500, random: () => 1 });
  b.next(); b.next(); b.next();
  assert.equal(b.next(), 4000);
  b.reset();
  assert.equal(b.next(), 500);
});

test('a connection that is accepted and then dropped at once does not reset the backoff', () => {
  const b = new Backoff({ base: 500, cap: 10_000, stableMs: 10_000, random: () => 1 });
  let now = 0;
  const delays = [];
  // A server that welcomes us and closes 200 ms later, over and over.
  for (let i = 0; i < 8; i++) {
    b.connected(now);
    now += 200;
    const d = b.next(now);
    delays.push(d);
    now += d;
  }
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
});

test('a connection that stayed up for stableMs starts the backoff over', () => {
  const b = new Backoff({ base: 500, cap: 10_000, stableMs: 10_000, random: () => 1 });
  b.next(0); b.next(0); b.next(0);
  b.connected(100_000);
  assert.ok(!b.isStable(109_999));
  assert.equal(b.next(109_999), 4000, 'up 9.999 s: still backing off');
  b.connected(200_000);
  assert.ok(b.isStable(210_000));
  assert.equal(b.next(210_000), 500, 'up 10 s: a fresh start');
  assert.equal(b.next(211_000), 1000, 'a failed attempt (no connected()) keeps backing off');
});

test('the attempt counter stops growing at the cap', () => {
  const b = new Backoff({ base: 500, cap: 10_000 });
  for (let i = 0; i < 10_000; i++) b.next(i);
  assert.ok(b.attempt <= 6, `attempt ${b.attempt}`);
  assert.equal(b.ceiling(), 10_000);
});
