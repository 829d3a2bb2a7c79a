import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Predictor, step } from '../js/prediction.js';
import { HeldInput, InputClock } from '../js/input.js';

const WORLD = { width: 500, height: 500, speed: 200, min: 10, max: 490, radius: 10 };
const TICK_RATE = 20;
const TICK_MS = 1000 / TICK_RATE;
const FRAME_MS = 1000 / 60;

/** The server's rule, written out independently of the client's step(). */
function serverStep(pos, dir) {
  let { x, y } = dir;
  const len = Math.sqrt(x * x + y * y);
  if (len > 1) { x /= len; y /= len; }
  const k = WORLD.speed / TICK_RATE;
  const c = (v) => Math.min(WORLD.max, Math.max(WORLD.min, v));
  return { x: c(pos.x + x * k), y: c(pos.y + y * k) };
}

test('step follows the server rule: speed/tick_rate per tick, normalised, clamped', () => {
  assert.deepEqual(step({ x: 250, y: 250 }, { x: 1, y: 0 }, WORLD, TICK_RATE), { x: 260, y: 250 });
  assert.deepEqual(step({ x: 250, y: 250 }, { x: 0, y: 0 }, WORLD, TICK_RATE), { x: 250, y: 250 });
  assert.deepEqual(step({ x: 485, y: 12 }, { x: 1, y: -1 }, WORLD, TICK_RATE), serverStep({ x: 485, y: 12 }, { x: 1, y: -1 }));
  assert.deepEqual(step({ x: 485, y: 15 }, { x: 1, y: -1 }, WORLD, TICK_RATE).x, 490);
  const d = step({ x: 100, y: 100 }, { x: -1, y: 1 }, WORLD, TICK_RATE);
  assert.ok(Math.abs(Math.hypot(d.x - 100, d.y - 100) - 10) < 1e-9, 'diagonal is not faster');
});

test('reconcile drops acknowledged inputs and replays the rest', () => {
  const p = new Predictor({ world: WORLD, tickRate: TICK_RATE });
  p.reconcile({ x: 100, y: 100 }, 0, 0);
  assert.deepEqual(p.render(0), { x: 100, y: 100 });
  for (let seq = 1; seq <= 5; seq++) p.apply(seq, { x: 1, y: 0 }, seq * 50);
  assert.deepEqual(p.pos, { x: 150, y: 100 });
  // Server applied 1..3 and agrees.
  p.reconcile({ x: 130, y: 100 }, 3, 300);
  assert.deepEqual(p.pending.map((i) => i.seq), [4, 5]);
  assert.deepEqual(p.pos, { x: 150, y: 100 });
  assert.equal(p.lastCorrection, 0);
  // Server says we were pushed down 4px: replay on top of that.
  const before = p.render(310);
  p.reconcile({ x: 140, y: 104 }, 4, 310);
  assert.deepEqual(p.pos, { x: 150, y: 104 });
  assert.equal(p.lastCorrection, 4);
  // The correction is smoothed: nothing visible moves at that instant...
  const at = p.render(310);
  assert.ok(Math.abs(at.y - before.y) < 1e-6, `no jump (${before.y} -> ${at.y})`);
  // ...and it is fully absorbed after ~100 ms.
  assert.deepEqual(p.render(410), { x: 150, y: 104 });
  assert.ok(p.render(360).y > 100 && p.render(360).y < 104);
});

test('a large correction (teleport) snaps at once', () => {
  const p = new Predictor({ world: WORLD, tickRate: TICK_RATE });
  p.reconcile({ x: 100, y: 100 }, 0, 0);
  p.reconcile({ x: 400, y: 400 }, 0, 10);
  assert.deepEqual(p.render(10), { x: 400, y: 400 });
});

test('inputs sent before the first snapshot are replayed on it', () => {
  const p = new Predictor({ world: WORLD, tickRate: TICK_RATE });
  assert.equal(p.render(0), null);
  p.apply(1, { x: 0, y: 1 }, 0);
  p.apply(2, { x: 0, y: 1 }, 50);
  p.reconcile({ x: 200, y: 210 }, 1, 60);
  assert.deepEqual(p.render(60), { x: 200, y: 220 });
});

/**
 * Discrete-time simulation (1 ms resolution) of this client against a model
 * of the server: one input applied per tick (buffer of 4), a snapshot every
 * tick, `latency` ms each way. The client uses the real HeldInput,
 * InputClock and Predictor, with frames at 60 fps.
 */
function simulate({ latency = 150, start = { x: 250, y: 250 }, keys = ['ArrowRight'], down = 1005, up = 2005, end = 3000, drop = new Set(), phase = 13, late = () => 0 } = {}) {
  // The server's rule: one queued input per tick; inputs that find the queue
  // full (or are listed in `drop`) are dropped, and acknowledged once the
  // queue has drained.
  const server = { pos: { ...start }, queue: [], ack: 0, dropped: 0, tick: 0 };
  const toServer = [];
  const toClient = [];
  const held = new HeldInput();
  const clock = new InputClock(TICK_MS);
  const pred = new Predictor({ world: WORLD, tickRate: TICK_RATE });
  pred.reconcile(start, 0, 0);
  const frames = [];
  const corrections = [];
  let seq = 0;
  let moving = 0;
  let nextPump = null;
  let nextFrame = FRAME_MS;

  const pump = (t) => {
    const dir = held.direction();
    const isMoving = dir.x !== 0 || dir.y !== 0;
    let r = clock.poll(t, isMoving);
    if (r === 'send') {
      seq += 1;
      if (isMoving) moving += 1;
      toServer.push({ at: t + latency, seq, dir });
      pred.apply(seq, dir, t);
      r = clock.poll(t, isMoving);
    }
    // `late(n)`: how many ms the n-th input timer fires late (a busy page).
    nextPump = typeof r === 'number' ? t + r + late(seq) : null;
  };

  for (let t = 0; t <= end; t++) {
    while (toServer.length && toServer[0].at <= t) {
      const m = toServer.shift();
      if (server.queue.length < 4 && !drop.has(m.seq)) server.queue.push(m);
      else server.dropped = Math.max(server.dropped, m.seq);
    }
    if (t >= phase && (t - phase) % TICK_MS === 0) {
      const m = server.queue.shift();
      if (m) {
        server.pos = serverStep(server.pos, m.dir);
        server.ack = m.seq;
      } else {
        server.ack = Math.max(server.ack, server.dropped);
      }
      server.tick += 1;
      toClient.push({ at: t + latency, pos: { ...server.pos }, ack: server.ack });
    }
    while (toClient.length && toClient[0].at <= t) {
      const s = toClient.shift();
      pred.reconcile(s.pos, s.ack, t);
      corrections.push(pred.lastCorrection);
    }
    if (t === down) { for (const k of keys) held.pressKey(k); pump(t); }
    if (t === up) { for (const k of keys) held.releaseKey(k); pump(t); }
    if (nextPump !== null && t >= nextPump) pump(t);
    if (t >= nextFrame) {
      frames.push({ t, ...pred.render(t) });
      nextFrame += FRAME_MS;
    }
  }
  return { server, pred, frames, corrections, moving, end };
}

test('150 ms latency: the dot moves on the very next frame and converges exactly after release', () => {
  const { server, pred, frames, corrections, moving, end } = simulate({ latency: 150 });
  const first = frames.find((f) => f.t > 1005);
  assert.ok(first.t - 1005 <= FRAME_MS, `first frame at ${first.t}`);
  assert.ok(first.x > 250, `moved on the first frame after keydown (x=${first.x})`);
  assert.equal(first.y, 250);
  // It cannot have come from the server: nothing the server did reaches us for 150+ ms.
  assert.ok(corrections.every((c) => c === 0), 'a clean link needs no correction');
  // Smooth: never backwards, never more than one frame's worth of speed.
  for (let i = 1; i < frames.length; i++) {
    const dx = frames[i].x - frames[i - 1].x;
    assert.ok(dx >= 0, `frame ${i} went backwards by ${dx}`);
    assert.ok(dx <= (WORLD.speed * (frames[i].t - frames[i - 1].t)) / 1000 + 1e-9, `frame ${i} jumped ${dx}px`);
  }
  // 1 s held at 200 px/s.
  assert.equal(moving, 20);
  assert.deepEqual(server.pos, { x: 450, y: 250 });
  assert.equal(pred.pending.length, 0);
  assert.deepEqual(pred.render(end), server.pos, 'rendered exactly where the server says');
  assert.deepEqual(frames.at(-1), { t: frames.at(-1).t, ...server.pos });
});

test('150 ms latency, diagonal into a corner: prediction and server agree to the bit', () => {
  const { server, pred, corrections, end } = simulate({ latency: 150, start: { x: 420, y: 80 }, keys: ['KeyD', 'KeyW'], up: 2500, end: 3500 });
  assert.deepEqual(server.pos, { x: 490, y: 10 });
  assert.ok(corrections.every((c) => c === 0));
  assert.deepEqual(pred.render(end), { x: 490, y: 10 });
});

test('a lost input is corrected smoothly and still converges exactly', () => {
  const { server, pred, frames, corrections, end } = simulate({ latency: 150, drop: new Set([5]) });
  assert.ok(corrections.some((c) => Math.abs(c - 10) < 1e-9), 'one step had to be taken back');
  assert.deepEqual(server.pos, { x: 440, y: 250 });
  for (let i = 1; i < frames.length; i++) {
    const dx = Math.abs(frames[i].x - frames[i - 1].x);
    assert.ok(dx < 7, `frame ${i} jumped ${dx}px`);
  }
  assert.deepEqual(pred.render(end), server.pos);
});

test('zero latency also works and the dot stops where the server stops', () => {
  const { server, pred, end } = simulate({ latency: 0, phase: 1 });
  assert.deepEqual(server.pos, { x: 450, y: 250 });
  assert.deepEqual(pred.render(end), server.pos);
});

test('if our last inputs are dropped, the server acknowledges them and prediction comes back to it', () => {
  // 1 s of holding sends seqs 1..20, and the zero input on release is 21.
  const { server, pred } = simulate({ latency: 150, drop: new Set([19, 20, 21]), end: 4000 });
  assert.deepEqual(server.pos, { x: 430, y: 250 });
  assert.equal(server.ack, 21);
  assert.equal(pred.pending.length, 0, 'nothing left to replay');
  assert.deepEqual(pred.render(4000), { x: 430, y: 250 });
});

test('late input timers do not make the glide faster than the server speed', () => {
  // Every third timer fires 10-30 ms late; the next one is on time again (slots advance by exactly a tick).
  const late = (n) => (n % 3 === 0 ? 10 + (n % 7) * 3 : 0);
  const { server, pred, frames, corrections, moving, end } = simulate({ latency: 150, late });
  assert.equal(moving, 20);
  assert.ok(corrections.every((c) => c === 0), 'still no correction');
  for (let i = 1; i < frames.length; i++) {
    const dt = frames[i].t - frames[i - 1].t;
    const dx = frames[i].x - frames[i - 1].x;
    assert.ok(dx >= 0, `frame ${i} went backwards by ${dx}`);
    assert.ok(dx <= (WORLD.speed * dt) / 1000 + 1e-9, `frame ${i} moved ${dx.toFixed(3)}px in ${dt} ms: faster than ${WORLD.speed} px/s`);
  }
  assert.deepEqual(server.pos, { x: 450, y: 250 });
  assert.deepEqual(pred.render(end), server.pos, 'and it still settles exactly');
});

test('unacknowledged inputs are bounded even if the server never acknowledges', () => {
  const p = new Predictor({ world: WORLD, tickRate: TICK_RATE, maxPending: 64 });
  p.reconcile({ x: 100, y: 100 }, 0, 0);
  for (let seq = 1; seq <= 10_000; seq++) p.apply(seq, { x: 0, y: 0 }, seq * 50);
  assert.equal(p.pending.length, 64);
  assert.equal(p.pending[0].seq, 10_000 - 63);
});
