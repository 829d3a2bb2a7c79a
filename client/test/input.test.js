import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeldInput, InputClock, steeringKey, keyDirection, normalize } from '../js/input.js';

test('arrow keys and WASD map by code, whatever the case or layout', () => {
  assert.equal(steeringKey({ code: 'ArrowUp', key: 'ArrowUp' }), 'ArrowUp');
  assert.equal(steeringKey({ code: 'ArrowRight', key: 'ArrowRight' }), 'ArrowRight');
  assert.equal(steeringKey({ code: 'KeyW', key: 'W' }), 'KeyW'); // caps lock
  assert.equal(steeringKey({ code: 'KeyW', key: 'z' }), 'KeyW'); // AZERTY: same physical key
  assert.equal(steeringKey({ key: 'ArrowLeft' }), 'ArrowLeft'); // no code: fall back to key
  assert.equal(steeringKey({ key: 'D' }), 'KeyD');
  assert.equal(steeringKey({ code: 'KeyQ', key: 'q' }), null);
  assert.equal(steeringKey({ code: 'Space', key: ' ' }), null);
  assert.deepEqual(keyDirection('ArrowDown'), { x: 0, y: 1 });
  assert.deepEqual(keyDirection('KeyA'), { x: -1, y: 0 });
});

test('single keys give unit directions', () => {
  const cases = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0], KeyW: [0, -1], KeyS: [0, 1], KeyA: [-1, 0], KeyD: [1, 0] };
  for (const [code, [x, y]] of Object.entries(cases)) {
    const h = new HeldInput();
    assert.ok(h.pressKey(code));
    assert.deepEqual(h.direction(), { x, y }, code);
  }
});

test('two keys make a diagonal, opposite keys cancel, duplicates do not add up', () => {
  const h = new HeldInput();
  h.pressKey('ArrowUp');
  h.pressKey('KeyD');
  assert.deepEqual(h.direction(), { x: 1, y: -1 });
  h.pressKey('ArrowDown');
  assert.deepEqual(h.direction(), { x: 1, y: 0 }, 'up + down cancel');
  h.pressKey('KeyA');
  assert.deepEqual(h.direction(), { x: 0, y: 0 }, 'everything cancels');
  h.releaseKey('ArrowDown');
  h.releaseKey('KeyA');
  h.pressKey('KeyW');
  assert.deepEqual(h.direction(), { x: 1, y: -1 }, 'W + ArrowUp is still just up');
  h.releaseKey('ArrowUp');
  assert.deepEqual(h.direction(), { x: 1, y: -1 }, 'W still held');
  h.releaseAll();
  assert.deepEqual(h.direction(), { x: 0, y: 0 });
  assert.equal(h.pressKey('KeyQ'), false);
});

test('pointer sources combine with keys', () => {
  const h = new HeldInput();
  h.press('ptr:1', { x: 0, y: -1 });
  h.press('ptr:2', { x: 1, y: 0 });
  assert.deepEqual(h.direction(), { x: 1, y: -1 });
  h.release('ptr:1');
  assert.deepEqual(h.direction(), { x: 1, y: 0 });
});

test('normalize: diagonals have length 1, short vectors are kept', () => {
  const d = normalize({ x: 1, y: -1 });
  assert.ok(Math.abs(Math.hypot(d.x, d.y) - 1) < 1e-12);
  assert.equal(d.x, 1 / Math.sqrt(2)); // what the server computes: x / len
  assert.deepEqual(normalize({ x: 0, y: 1 }), { x: 0, y: 1 });
  assert.deepEqual(normalize({ x: 0.3, y: 0.4 }), { x: 0.3, y: 0.4 });
  assert.deepEqual(normalize({ x: 0, y: 0 }), { x: 0, y: 0 });
});

test('input clock: one send per tick while held, one zero input after release', () => {
  const c = new InputClock(50);
  assert.equal(c.poll(0, false), 'idle', 'nothing held, nothing sent');
  assert.equal(c.poll(1000, true), 'send', 'starting from rest sends at once');
  assert.equal(c.poll(1000, true), 50, 'then waits a tick');
  assert.equal(c.poll(1020, true), 30);
  assert.equal(c.poll(1050, true), 'send');
  assert.equal(c.poll(1103, true), 'send', 'a late timer still sends');
  assert.equal(c.poll(1103, true), 47, 'and the schedule does not drift');
  assert.equal(c.poll(1120, false), 30, 'released: the zero input waits for its slot');
  assert.equal(c.poll(1150, false), 'send', 'the zero input');
  assert.equal(c.poll(1200, false), 'idle', 'only one');
});

test('input clock: sends at most tick-rate messages on average, even when polled a lot', () => {
  const c = new InputClock(50);
  let sent = 0;
  for (let t = 0; t < 10_000; t += 1) if (c.poll(t, true) === 'send') sent++;
  assert.equal(sent, 200);
});

test('input clock: after a long stall it resynchronises instead of bursting', () => {
  const c = new InputClock(50);
  c.poll(0, true);
  assert.equal(c.poll(5000, true), 'send');
  assert.equal(c.poll(5001, true), 49);
});

test('hasKey tells a new press from one already held (auto-repeat after focus returns)', () => {
  const h = new HeldInput();
  assert.equal(h.hasKey('ArrowUp'), false);
  h.pressKey('ArrowUp');
  assert.equal(h.hasKey('ArrowUp'), true);
  h.releaseAll(); // blur
  assert.equal(h.hasKey('ArrowUp'), false, 'a repeat keydown after blur presses again');
});

test('taps: one step each, in order, until the input carrying them is sent', () => {
  const h = new HeldInput();
  const c = new InputClock(50);
  const sent = [];
  // What main.js pump() does: poll, send the current direction, consume one tap.
  const pump = (now) => {
    const dir = h.direction();
    if (c.poll(now, dir.x !== 0 || dir.y !== 0) === 'send') {
      sent.push([now, dir.x, dir.y]);
      if (h.taps.length) h.consumeTap();
    }
  };
  h.tap({ x: 1, y: 0 });
  pump(1000);
  assert.deepEqual(sent, [[1000, 1, 0]], 'sent at once');
  assert.deepEqual(h.direction(), { x: 0, y: 0 }, 'and gone');
  // Three taps before the next slot: three steps, one per tick, then a zero input.
  h.tap({ x: 0, y: 1 });
  h.tap({ x: 0, y: 1 });
  h.tap({ x: -1, y: 0 });
  for (let t = 1010; t <= 1300; t += 10) pump(t);
  assert.deepEqual(sent, [[1000, 1, 0], [1050, 0, 1], [1100, 0, 1], [1150, -1, 0], [1200, 0, 0]]);
  // Bounded, and cleared by releaseAll.
  for (let i = 0; i < 20; i++) h.tap({ x: 1, y: 0 });
  assert.equal(h.taps.length, 8);
  h.releaseAll();
  assert.deepEqual(h.direction(), { x: 0, y: 0 });
});
