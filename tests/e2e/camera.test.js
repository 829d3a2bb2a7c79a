/**
 * A world larger than the view: `--world-size 3000 --view-size 500`. The
 * board shows 500 x 500 px of it and the camera follows our dot.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openClient, until, sleep, screenshot } from './helpers.js';

let server;
let browser;

after(async () => {
  await browser?.close();
  await server?.stop();
});

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

/** Our drawn position and the camera, once the dot has stopped (two equal reads). */
async function settled(page) {
  let prev = null;
  return until(async () => {
    const s = await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r({ me: window.playfield.me(), cam: window.playfield.camera() })))));
    const same = prev && s.me.x === prev.me.x && s.me.y === prev.me.y && s.cam.x === prev.cam.x && s.cam.y === prev.cam.y;
    prev = s;
    return same && s;
  }, { interval: 150, what: 'the dot and camera to settle' });
}

test('in a 3000 px world with a 500 px view, the camera follows our dot', async () => {
  server = await startServer({ args: ['--world-size', '3000', '--view-size', '500'] });
  browser = await launchBrowser();
  const context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
  const page = await openClient(context, server.url, 'big');
  assert.equal(await page.evaluate(() => window.playfield.protocol), 'playfield.v1.bin');
  await until(() => page.evaluate(() => window.playfield.me()), { what: 'own dot' });

  // The board is a 500 px view of the world, not the world squeezed in.
  const a = await settled(page);
  assert.deepEqual([a.cam.width, a.cam.height, a.cam.worldWidth, a.cam.worldHeight], [500, 500, 3000, 3000]);
  const box = await page.evaluate(() => { const b = document.getElementById('canvas').getBoundingClientRect(); return { w: b.width, h: b.height }; });
  assert.ok(box.w <= 500 && Math.abs(box.w - box.h) < 1, `a square board of at most 500 css px: ${JSON.stringify(box)}`);
  // Centred on us, clamped to the world.
  assert.equal(a.cam.x, clamp(a.me.x - 250, 0, 2500), JSON.stringify(a));
  assert.equal(a.cam.y, clamp(a.me.y - 250, 0, 2500), JSON.stringify(a));
  await screenshot(page, 'camera-before');

  // Walk towards the far side until the camera has scrolled 150 px (from the
  // edge the dot first walks to the middle of the view).
  const dir = a.me.x < 1500 ? 1 : -1;
  const key = dir > 0 ? 'ArrowRight' : 'ArrowLeft';
  await page.keyboard.down(key);
  let mid = null;
  try {
    mid = await until(async () => {
      const s = await page.evaluate(() => ({ me: window.playfield.me(), cam: window.playfield.camera() }));
      return (s.cam.x - a.cam.x) * dir >= 150 && s;
    }, { timeout: 10_000, interval: 50, what: 'the camera to scroll 150 px' });
    // While scrolling, our dot stays in the middle of the view (within a frame's movement).
    assert.ok(Math.abs(mid.me.x - (mid.cam.x + 250)) < 8, `dot centred while moving: ${JSON.stringify(mid)}`);
    await sleep(200);
  } finally {
    await page.keyboard.up(key);
  }
  const b = await settled(page);
  assert.ok((b.cam.x - a.cam.x) * dir >= 150, `scrolled: ${JSON.stringify({ a, b })}`);
  assert.equal(b.cam.y, a.cam.y, 'no vertical scroll');
  assert.equal(b.cam.x, clamp(b.me.x - 250, 0, 2500), JSON.stringify(b));
  // The server agrees where we are, exactly.
  const srv = await page.evaluate(() => window.playfield.serverPlayers().find((p) => p.id === window.playfield.id));
  assert.deepEqual([srv.x, srv.y], [b.me.x, b.me.y]);
  await screenshot(page, 'camera-after');
  assert.deepEqual(page.__errors ?? [], []);
});
