/**
 * Our client (served at GET /) against a real server: players see each
 * other, keys and on-screen buttons move at the server's speed, leavers
 * vanish, rooms are separate.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openClient, until, sleep, serverPos, screenshot, pipeWebSocket,
} from './helpers.js';

let server;
let browser;
let context;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/**
 * Measure how fast `id` moves as drawn by `page` (interpolated view), with
 * timestamps taken inside the page so test-runner latency does not count.
 * @returns {Promise<{dx:number, dy:number, ms:number}>}
 */
function measureSpeed(page, id, ms) {
  return page.evaluate(async ({ id: pid, ms: dur }) => {
    const pos = () => window.playfield.players().find((p) => p.id === pid);
    const a = pos();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, dur));
    const b = pos();
    const t1 = performance.now();
    return { dx: b.x - a.x, dy: b.y - a.y, ms: t1 - t0 };
  }, { id, ms });
}

/** Direction (+1 right / -1 left) with the most room from x. */
const awayFromWall = (x) => (x < 250 ? 1 : -1);

/** Hold a direction with `hold`, release with `release`, and return how far `id` moved on the server. */
async function displacement(observer, id, hold, release, ms = 500) {
  const start = await serverPos(observer, id);
  await hold();
  await sleep(ms);
  await release();
  // Wait until the server's position has settled (two identical reads).
  let prev = null;
  const end = await until(async () => {
    const p = await serverPos(observer, id);
    const same = prev && p.x === prev.x && p.y === prev.y;
    prev = p;
    return same && p;
  }, { interval: 150, what: 'movement to stop' });
  return { dx: end.x - start.x, dy: end.y - start.y, start, end };
}

test('two pages in the same room see each other with the right ids', async () => {
  const a = await openClient(context, server.url, 'duo');
  const b = await openClient(context, server.url, 'duo');
  const [idA, idB] = await Promise.all([a.evaluate(() => window.playfield.id), b.evaluate(() => window.playfield.id)]);
  assert.notEqual(idA, idB);
  for (const page of [a, b]) {
    const ids = await until(async () => {
      const list = await page.evaluate(() => window.playfield.players().map((p) => p.id).sort());
      return list.length === 2 && list;
    }, { what: 'two players drawn' });
    assert.deepEqual(ids, [idA, idB].sort());
    assert.equal(await page.evaluate(() => window.playfield.room), 'duo');
  }
  // The DOM mirrors the state for people too.
  assert.equal(await a.textContent('#player-id'), String(idA));
  assert.equal(await a.getAttribute('#status', 'data-status'), 'connected');
  assert.equal(await a.textContent('#status'), 'Connected');
  await until(async () => (await a.textContent('#stat-players')) === '2', { what: 'overlay player count' });
  await screenshot(a, 'client-two-players');
  await a.close();
  await b.close();
});

test('holding an arrow key moves at the server speed (200 px/s) as seen by another page', async () => {
  const mover = await openClient(context, server.url, 'speed');
  const watcher = await openClient(context, server.url, 'speed');
  const id = await mover.evaluate(() => window.playfield.id);
  const start = await until(() => serverPos(watcher, id), { what: 'mover in watcher snapshot' });
  const dir = awayFromWall(start.x);
  const key = dir > 0 ? 'ArrowRight' : 'ArrowLeft';
  await until(() => watcher.evaluate((pid) => window.playfield.players().some((p) => p.id === pid), id));

  const before = await mover.evaluate(() => window.playfield.me());
  await mover.keyboard.down(key);
  // Our own dot responds before any server round trip could have happened.
  const early = await mover.evaluate(() => new Promise((r) => requestAnimationFrame(() => r(window.playfield.me()))));
  await sleep(250); // reach steady state (and let the watcher's 100 ms delay pass)
  const v = await measureSpeed(watcher, id, 800);
  await mover.keyboard.up(key);

  const speed = Math.abs(v.dx) / (v.ms / 1000);
  assert.ok(Math.sign(v.dx) === dir, `moved the right way (dx=${v.dx})`);
  assert.ok(speed > 165 && speed < 235, `speed ${speed.toFixed(1)} px/s, expected ~200`);
  assert.ok(Math.abs(v.dy) < 1e-6, 'straight line');
  assert.equal(Math.sign(early.x - before.x), dir, `own dot moved on the next frame (${before.x} -> ${early.x})`);

  // After release, our prediction settles exactly on the server's position.
  const settled = await until(async () => {
    const [me, srv] = await mover.evaluate(() => [window.playfield.me(), window.playfield.serverPlayers().find((p) => p.id === window.playfield.id)]);
    return me.x === srv.x && me.y === srv.y && me;
  }, { what: 'prediction to converge' });
  const seen = await until(async () => {
    const p = await serverPos(watcher, id);
    return p.x === settled.x && p;
  }, { what: 'watcher to agree' });
  assert.equal(seen.y, settled.y);
  await screenshot(mover, 'client-after-move');
  await mover.close();
  await watcher.close();
});

test('on a 150 ms round trip our dot still moves on the next frame, glides without jumps, and settles exactly', async () => {
  const page = await context.newPage();
  await page.routeWebSocket(/\/ws(\?.*)?$/, (route) => {
    pipeWebSocket(route, route.url(), { delayMs: 75, protocols: route.protocols() });
  });
  await page.goto(`${server.url}?room=lag`);
  await page.waitForFunction(() => window.playfield?.status === 'connected', null, { timeout: 15_000 });
  const id = await page.evaluate(() => window.playfield.id);
  const start = await until(() => page.evaluate(() => window.playfield.me()), { what: 'own position' });
  const key = start.x < 250 ? 'ArrowRight' : 'ArrowLeft';
  const dir = key === 'ArrowRight' ? 1 : -1;
  const rtt = await until(async () => {
    const t = await page.textContent('#stat-ping');
    return /\d+ ms/.test(t) && Number.parseInt(t, 10);
  }, { what: 'ping' });
  assert.ok(rtt >= 140, `the link really is laggy (ping ${rtt} ms)`);

  // Record what is drawn for our dot on every frame, and when the key went down.
  const recording = page.evaluate(() => new Promise((resolve) => {
    window.addEventListener('keydown', () => { window.__downAt ??= performance.now(); });
    window.addEventListener('keyup', () => { window.__upAt ??= performance.now(); });
    const frames = [];
    const t0 = performance.now();
    const f = () => {
      const now = performance.now();
      const me = window.playfield.me();
      frames.push([now, me.x, me.y]);
      if (now - t0 < 2200) requestAnimationFrame(f);
      else resolve({ frames, downAt: window.__downAt, upAt: window.__upAt });
    };
    requestAnimationFrame(f);
  }));
  await sleep(300);
  await page.keyboard.down(key);
  await sleep(900);
  await page.keyboard.up(key);
  const { frames, downAt } = await recording;

  const before = frames.filter(([t]) => t < downAt).at(-1);
  const first = frames.find(([t]) => t > downAt);
  // A busy CI machine may drop a frame or two; the point is that the move shows
  // long before the 150 ms round trip.
  assert.ok(first[0] - downAt < 100, `a frame soon after keydown (${(first[0] - downAt).toFixed(1)} ms)`);
  assert.equal(Math.sign(first[1] - before[1]), dir, `moved on the first frame after keydown (${before[1]} -> ${first[1]}), long before the server could answer`);
  for (let i = 1; i < frames.length; i++) {
    const [t0, x0, y0] = frames[i - 1];
    const [t1, x1, y1] = frames[i];
    const dx = (x1 - x0) * dir;
    assert.ok(dx >= -1e-3, `frame ${i} went backwards by ${-dx}px`);
    // The glide never exceeds the server speed (200 px/s), even when an input
    // timer fires late; so no frame moves more than that speed allows.
    assert.ok(dx <= 0.2 * (t1 - t0) + 0.5, `frame ${i} jumped ${dx.toFixed(2)}px in ${(t1 - t0).toFixed(1)} ms`);
    assert.ok(Math.abs(y1 - y0) < 1e-3, 'no vertical wobble');
  }
  const moved = (frames.at(-1)[1] - start.x) * dir;
  assert.ok(moved > 140 && moved < 230, `moved ${moved}px in ~0.9 s`);
  const settled = await until(async () => {
    const [me, srv] = await page.evaluate((pid) => [window.playfield.me(), window.playfield.serverPlayers().find((p) => p.id === pid)], id);
    return me.x === srv.x && me.y === srv.y && srv;
  }, { what: 'prediction to converge on the server position' });
  assert.equal(frames.at(-1)[1], settled.x, 'the last drawn frame was already exactly the server position');
  await page.close();
});

test('W/A/S/D steer and two keys make a diagonal', async () => {
  const page = await openClient(context, server.url, 'wasd');
  const id = await page.evaluate(() => window.playfield.id);
  await until(() => serverPos(page, id));
  const start = await serverPos(page, id);
  const h = start.x < 250 ? 'KeyD' : 'KeyA';
  const v = start.y < 250 ? 'KeyS' : 'KeyW';
  const m = await displacement(page, id,
    async () => { await page.keyboard.down(h); await page.keyboard.down(v); },
    async () => { await page.keyboard.up(h); await page.keyboard.up(v); }, 400);
  assert.equal(Math.sign(m.dx), h === 'KeyD' ? 1 : -1, `horizontal ${JSON.stringify(m)}`);
  assert.equal(Math.sign(m.dy), v === 'KeyS' ? 1 : -1, `vertical ${JSON.stringify(m)}`);
  // The keys go down one after the other, so the very first tick may carry
  // only the first key: allow one straight 10 px step, no more.
  assert.ok(Math.abs(Math.abs(m.dx) - Math.abs(m.dy)) <= 10 + 1e-3, `a diagonal: ${JSON.stringify(m)}`);
  const dist = Math.hypot(m.dx, m.dy);
  assert.ok(dist > 40 && dist < 140, `diagonal is not faster: ${dist.toFixed(1)} px in ~0.4 s`);
  // Page never scrolled because of the keys.
  assert.equal(await page.evaluate(() => window.scrollY), 0);
  await page.close();
});

test('on-screen buttons move the dot with a mouse', async () => {
  const page = await openClient(context, server.url, 'mouse');
  const id = await page.evaluate(() => window.playfield.id);
  const start = await until(() => serverPos(page, id));
  const btn = start.x < 250 ? '#btn-right' : '#btn-left';
  const box = await page.locator(btn).boundingBox();
  const m = await displacement(page, id,
    async () => { await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2); await page.mouse.down(); },
    () => page.mouse.up(), 500);
  assert.equal(Math.sign(m.dx), btn === '#btn-right' ? 1 : -1, JSON.stringify(m));
  assert.ok(Math.abs(m.dx) >= 60 && Math.abs(m.dx) <= 150, `moved ${m.dx}px in ~0.5 s`);
  assert.equal(m.dy, 0);
  await page.close();
});

test('on-screen buttons move the dot with touch', async () => {
  const touchCtx = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, hasTouch: true, isMobile: true });
  try {
    const page = await openClient(touchCtx, server.url, 'touch');
    const id = await page.evaluate(() => window.playfield.id);
    const start = await until(() => serverPos(page, id));
    const btn = start.y < 250 ? '#btn-down' : '#btn-up';
    await page.locator(btn).scrollIntoViewIfNeeded();
    await page.evaluate((sel) => {
      window.__pointerTypes = [];
      document.querySelector(sel).addEventListener('pointerdown', (e) => window.__pointerTypes.push(e.pointerType));
    }, btn);
    const box = await page.locator(btn).boundingBox();
    const cdp = await touchCtx.newCDPSession(page);
    const point = { x: box.x + box.width / 2, y: box.y + box.height / 2, id: 1 };
    const m = await displacement(page, id,
      () => cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [point] }),
      () => cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] }), 500);
    assert.deepEqual(await page.evaluate(() => window.__pointerTypes), ['touch']);
    assert.equal(Math.sign(m.dy), btn === '#btn-down' ? 1 : -1, JSON.stringify(m));
    assert.ok(Math.abs(m.dy) >= 60 && Math.abs(m.dy) <= 150, `moved ${m.dy}px in ~0.5 s`);
    assert.equal(m.dx, 0);
    // Board fits the phone's width; no horizontal scrolling.
    const fit = await page.evaluate(() => ({ board: document.getElementById('canvas').getBoundingClientRect().width, doc: document.documentElement.scrollWidth, vw: innerWidth }));
    assert.ok(fit.board <= fit.vw && fit.doc <= fit.vw, JSON.stringify(fit));
    await screenshot(page, 'client-phone');
  } finally {
    await touchCtx.close();
  }
});

test('a page that closes disappears from the others', async () => {
  const stay = await openClient(context, server.url, 'leave');
  const go = await openClient(context, server.url, 'leave');
  const goId = await go.evaluate(() => window.playfield.id);
  await until(() => stay.evaluate((id) => window.playfield.players().some((p) => p.id === id), goId), { what: 'second player drawn' });
  await go.close();
  await until(() => stay.evaluate((id) => !window.playfield.serverPlayers().some((p) => p.id === id)
    && !window.playfield.players().some((p) => p.id === id), goId), { what: 'leaver removed' });
  assert.equal((await stay.evaluate(() => window.playfield.players())).length, 1);
  await stay.close();
});

test('different rooms do not see each other; the room picker switches rooms without reloading', async () => {
  const a = await openClient(context, server.url, 'a');
  const b = await openClient(context, server.url, 'b');
  await sleep(300);
  for (const [page, room] of [[a, 'a'], [b, 'b']]) {
    const me = await page.evaluate(() => window.playfield.id);
    assert.equal(await page.evaluate(() => window.playfield.room), room);
    assert.deepEqual(await page.evaluate(() => window.playfield.serverPlayers().map((p) => p.id)), [me]);
    await until(async () => (await page.textContent('#stat-room')) === room, { what: 'overlay room' });
  }
  const rooms = await (await fetch(`${server.url}rooms`)).json();
  const names = rooms.rooms.map((r) => r.name);
  assert.ok(names.includes('a') && names.includes('b'), JSON.stringify(rooms));

  // Join b from a's room picker.
  await a.evaluate(() => { window.__noReload = true; });
  await a.fill('#room-input', 'b');
  await a.click('#room-join');
  await a.waitForFunction(() => window.playfield.room === 'b' && window.playfield.status === 'connected');
  assert.ok(a.url().endsWith('?room=b'), a.url());
  assert.equal(await a.evaluate(() => window.__noReload), true);
  await until(() => a.evaluate(() => window.playfield.players().length === 2), { what: 'both in b' });

  // Invalid names are refused on the spot.
  await a.fill('#room-input', 'no spaces!');
  await a.click('#room-join');
  assert.equal(await a.getAttribute('#room-input', 'aria-invalid'), 'true');
  assert.equal(await a.evaluate(() => window.playfield.room), 'b');
  await a.close();
  await b.close();
});

test('no page errors and nothing fetched from outside', async () => {
  const page = await context.newPage();
  const external = [];
  page.on('request', (r) => { if (!r.url().startsWith(server.url) && !r.url().startsWith('ws://' + server.host)) external.push(r.url()); });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(server.url);
  await page.waitForFunction(() => window.playfield?.status === 'connected');
  await sleep(500);
  assert.deepEqual(external, []);
  assert.deepEqual(errors, []);
  await page.close();
});
