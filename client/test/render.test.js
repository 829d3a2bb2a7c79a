import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Renderer, cameraFor, viewOf } from '../js/render.js';

/** A canvas whose 2D context records the calls made on it. */
function fakeCanvas() {
  const calls = [];
  const ctx = new Proxy({}, {
    get: (target, prop) => (prop in target ? target[prop] : (...args) => calls.push([prop, ...args])),
    set: (target, prop, value) => { target[prop] = value; calls.push([`=${String(prop)}`, value]); return true; },
  });
  return { canvas: { width: 300, height: 150, getContext: () => ctx }, calls };
}

const WORLD = { width: 500, height: 500, speed: 200, min: 10, max: 490, radius: 10 };

test('backing store follows CSS size x devicePixelRatio; the board scales to fit', () => {
  const { canvas } = fakeCanvas();
  const r = new Renderer(canvas);
  r.setWorld(WORLD);
  r.resize(500, 2);
  assert.deepEqual([canvas.width, canvas.height, r.scale], [1000, 1000, 2]);
  r.resize(350, 3); // a phone: narrower than the world, denser pixels
  assert.deepEqual([canvas.width, canvas.height], [1050, 1050]);
  assert.equal(r.scale, 1050 / 500);
});

test('draws one dot per other player, skips our server copy, draws us last with a label', () => {
  const { canvas, calls } = fakeCanvas();
  const r = new Renderer(canvas);
  r.setWorld(WORLD);
  r.resize(500, 1);
  const others = [
    { id: 1, x: 50, y: 50, color: '#f00' },
    { id: 2, x: 60, y: 60, color: '#0f0' },
    { id: 7, x: 70, y: 70, color: '#00f' }, // our own entry in the snapshot
  ];
  calls.length = 0;
  r.draw(others, { x: 100, y: 200, color: '#00f' }, 7);
  const arcs = calls.filter((c) => c[0] === 'arc');
  assert.deepEqual(arcs.map((c) => [c[1], c[2], c[3]]), [[50, 50, 10], [60, 60, 10], [100, 200, 14], [100, 200, 10]]);
  const label = calls.filter((c) => c[0] === 'fillText');
  assert.ok(label.length >= 1 && label.every((c) => c[1] === 'you'));
  assert.ok(calls.findIndex((c) => c[0] === 'fillText') > calls.findLastIndex((c) => c[0] === 'arc' && c[1] === 60));
});

const BIG = { width: 3000, height: 3000, speed: 200, min: 10, max: 2990, radius: 10 };

test('the default world fits the view: no camera, the same drawing as ever', () => {
  const { canvas, calls } = fakeCanvas();
  const r = new Renderer(canvas);
  r.setWorld(WORLD, 500);
  assert.deepEqual(r.view, { width: 500, height: 500 });
  assert.equal(r.scrolls, false);
  r.resize(500, 1);
  calls.length = 0;
  r.draw([], { x: 480, y: 20, color: '#fff' }, 1);
  assert.deepEqual(r.camera, { x: 0, y: 0 });
  const t = calls.find((c) => c[0] === 'setTransform');
  assert.deepEqual(t.slice(1).map((v) => v + 0), [1, 0, 0, 1, 0, 0]);
  assert.deepEqual(calls.find((c) => c[0] === 'fillRect').slice(1), [0, 0, 500, 500]);
  // 9 vertical and 9 horizontal lines at 50, 100, ... 450, full length.
  const moves = calls.filter((c) => c[0] === 'moveTo');
  assert.equal(moves.length, 18);
  assert.deepEqual(moves[0].slice(1), [50, 0]);
  assert.deepEqual(calls.find((c) => c[0] === 'lineTo').slice(1), [50, 500]);
  assert.ok(!calls.some((c) => c[0] === 'strokeRect' && c[3] !== 480), 'no minimap');
});

test('camera: centred on us, clamped to the world edges', () => {
  const view = viewOf(BIG, 500);
  assert.deepEqual(view, { width: 500, height: 500 });
  assert.deepEqual(viewOf(WORLD, 3000), { width: 500, height: 500 }, 'a view larger than the world shows the world');
  assert.deepEqual(viewOf(WORLD, null), { width: 500, height: 500 });
  assert.deepEqual(cameraFor({ x: 1500, y: 1000 }, BIG, view), { x: 1250, y: 750 });
  assert.deepEqual(cameraFor({ x: 20, y: 2990 }, BIG, view), { x: 0, y: 2500 });
  assert.deepEqual(cameraFor(null, BIG, view), { x: 1250, y: 1250 }, 'nobody to follow: the centre');
  assert.deepEqual(cameraFor({ x: 20, y: 400 }, WORLD, viewOf(WORLD, 500)), { x: 0, y: 0 });
});

test('a large world scrolls: translated transform, grid in view, off-view dots skipped, a minimap', () => {
  const { canvas, calls } = fakeCanvas();
  const r = new Renderer(canvas);
  r.setWorld(BIG, 500);
  assert.equal(r.scrolls, true);
  r.resize(500, 2);
  assert.deepEqual([canvas.width, canvas.height, r.scale], [1000, 1000, 2]);
  calls.length = 0;
  const others = [
    { id: 2, x: 1400, y: 1000, color: '#f00' }, // in view
    { id: 3, x: 2000, y: 1000, color: '#0f0' }, // far right: not drawn
    { id: 4, x: 1245, y: 900, color: '#00f' }, // just outside, but its edge shows
  ];
  r.draw(others, { x: 1500, y: 1000, color: '#fff' }, 1);
  assert.deepEqual(r.camera, { x: 1250, y: 750 });
  const t = calls.find((c) => c[0] === 'setTransform');
  assert.deepEqual(t.slice(1), [2, 0, 0, 2, -2500, -1500]);
  assert.deepEqual(calls.find((c) => c[0] === 'fillRect').slice(1), [1250, 750, 500, 500]);
  const arcs = calls.filter((c) => c[0] === 'arc' && c[3] === 10).map((c) => [c[1], c[2]]);
  assert.deepEqual(arcs, [[1400, 1000], [1245, 900], [1500, 1000]]);
  // Grid lines only in view: vertical ones from 1250 to 1750.
  const xs = calls.filter((c) => c[0] === 'moveTo' && c[2] === 750).map((c) => c[1]);
  assert.ok(xs.length > 0 && xs.every((x) => x >= 1250 && x <= 1750), JSON.stringify(xs));
  assert.ok(xs.includes(1500), 'a major line at 1500');
  // The minimap outlines the view: 500 / 3000 of its 144 device px.
  const view = calls.filter((c) => c[0] === 'strokeRect').at(-1);
  assert.deepEqual(view.slice(3).map((v) => Math.round(v)), [24, 24]);
});
