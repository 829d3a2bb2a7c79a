import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Renderer } from '../js/render.js';

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
