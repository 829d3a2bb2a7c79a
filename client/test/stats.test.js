import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateCounter } from '../js/stats.js';

test('counts events in the last second', () => {
  const r = new RateCounter();
  for (let t = 0; t < 5000; t += 50) r.hit(t);
  assert.equal(r.count(4999), 20);
  assert.equal(r.count(5475), 10, "(4475, 5475]: 4500 … 4950");
  assert.equal(r.count(7000), 0);
});

test('stays bounded when nobody reads it (a throttled background tab)', () => {
  const r = new RateCounter({ max: 100 });
  for (let t = 0; t < 600_000; t += 50) r.hit(t); // 10 minutes at 20 Hz, never read
  assert.ok(r.times.length <= 2 * 100 + 64, `kept ${r.times.length}`);
  assert.equal(r.count(600_000 - 50), 20);
  const burst = new RateCounter({ max: 100 });
  for (let i = 0; i < 100_000; i++) burst.hit(1000); // all at the same instant
  assert.ok(burst.times.length <= 2 * 100 + 64, `kept ${burst.times.length}`);
  assert.equal(burst.count(1000), 100, 'saturates at max');
});
