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

/**
 * Count the frames of `page`'s game socket from now on: binary or text in
 * each direction, and the `type`s of the text ones.
 */
function watchFrames(page) {
  const seen = { sockets: 0, recvBinary: 0, recvText: 0, sentBinary: 0, sentText: 0, textTypes: new Set() };
  page.on('websocket', (ws) => {
    if (!/\/ws(\?|$)/.test(ws.url())) return;
    seen.sockets += 1;
    ws.on('framereceived', ({ payload }) => {
      if (typeof payload === 'string') {
        seen.recvText += 1;
        seen.textTypes.add(JSON.parse(payload).type);
      } else {
        seen.recvBinary += 1;
      }
    });
    ws.on('framesent', ({ payload }) => {
      if (typeof payload === 'string') seen.sentText += 1;
      else seen.sentBinary += 1;
    });
  });
  return seen;
}

test('the page negotiates playfield.v1.bin: binary snapshots, inputs and pings', async () => {
  const page = await context.newPage();
  const frames = watchFrames(page);
  await page.goto(`${server.url}?room=binary`);
  await page.waitForFunction(() => window.playfield?.status === 'connected', null, { timeout: 15_000 });
  assert.equal(await page.evaluate(() => window.playfield.protocol), 'playfield.v1.bin');
  assert.deepEqual(await page.evaluate(() => window.playfield.offered), ['playfield.v1.bin', 'playfield.v1.json']);
  await until(async () => (await page.textContent('#stat-proto')) === 'bin', { what: 'overlay protocol' });
  const id = await page.evaluate(() => window.playfield.id);
  const start = await until(() => serverPos(page, id), { what: 'own entity' });
  const key = start.x < 250 ? 'ArrowRight' : 'ArrowLeft';
  await page.keyboard.down(key);
  await sleep(400);
  await page.keyboard.up(key);
  await until(async () => {
    const [me, srv] = await page.evaluate(() => [window.playfield.me(), window.playfield.serverPlayers().find((p) => p.id === window.playfield.id)]);
    return srv.x !== start.x && me.x === srv.x && me.y === srv.y;
  }, { what: 'moved, and prediction settled exactly on the server position' });
  await until(() => frames.recvText >= 2, { what: 'a pong' }); // pings go out every 1.5 s
  assert.equal(frames.sockets, 1);
  assert.ok(frames.recvBinary >= 10, `binary snapshots (${frames.recvBinary})`);
  // Text frames on bin: only welcome, pong (and error, none here).
  assert.deepEqual([...frames.textTypes].sort(), ['pong', 'welcome']);
  assert.ok(frames.sentBinary >= 5, `binary inputs and pings (${frames.sentBinary})`);
  assert.equal(frames.sentText, 0, 'nothing sent as JSON');
  assert.deepEqual(page.__errors ?? [], []);
  await page.close();
});

test('?proto=json still plays, on JSON, with players of the binary protocol', async () => {
  const page = await context.newPage();
  const frames = watchFrames(page);
  page.on('pageerror', (err) => { page.__errors = [...(page.__errors || []), err]; });
  await page.goto(`${server.url}?proto=json&room=mixed`);
  await page.waitForFunction(() => window.playfield?.status === 'connected', null, { timeout: 15_000 });
  assert.equal(await page.evaluate(() => window.playfield.protocol), 'playfield.v1.json');
  assert.deepEqual(await page.evaluate(() => window.playfield.offered), ['playfield.v1.json']);
  await until(async () => (await page.textContent('#stat-proto')) === 'json', { what: 'overlay protocol' });
  const other = await openClient(context, server.url, 'mixed'); // binary
  assert.equal(await other.evaluate(() => window.playfield.protocol), 'playfield.v1.bin');
  const id = await page.evaluate(() => window.playfield.id);
  await until(() => serverPos(other, id), { what: 'the JSON player in the binary page' });
  const start = await serverPos(page, id);
  const key = start.x < 250 ? 'ArrowRight' : 'ArrowLeft';
  const m = await displacement(other, id, () => page.keyboard.down(key), () => page.keyboard.up(key), 400);
  assert.equal(Math.sign(m.dx), key === 'ArrowRight' ? 1 : -1, JSON.stringify(m));
  assert.ok(Math.abs(m.dx) >= 40, `moved ${m.dx}px`);
  await until(async () => {
    const [me, srv] = await page.evaluate(() => [window.playfield.me(), window.playfield.serverPlayers().find((p) => p.id === window.playfield.id)]);
    return me.x === srv.x && me.y === srv.y;
  }, { what: 'prediction settled on JSON too' });
  assert.equal(frames.recvBinary, 0, 'no binary frames on JSON');
  assert.equal(frames.sentBinary, 0);
  assert.ok(frames.textTypes.has('snapshot'));
  assert.deepEqual(page.__errors ?? [], []);
  await page.close();
  await other.close();
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
  // The proxied socket does not report the subprotocol; the binary snapshots do.
  assert.equal(await page.evaluate(() => window.playfield.protocol), 'playfield.v1.bin');
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
  const { frames, downAt, upAt } = await recording;
  assert.ok(downAt && upAt > downAt, 'key went down and up during the recording');

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
  // One 10 px step per 50 ms tick while held, the first at keydown: the
  // distance matches how long the key was held (page clock), within two steps.
  const moved = (frames.at(-1)[1] - before[1]) * dir;
  const expected = 0.2 * (upAt - downAt);
  assert.ok(Math.abs(moved - expected) <= 20, `moved ${moved}px while held ${(upAt - downAt).toFixed(0)} ms (expected ~${expected.toFixed(0)}px)`);
  const settled = await until(async () => {
    const [me, srv] = await page.evaluate((pid) => [window.playfield.me(), window.playfield.serverPlayers().find((p) => p.id === pid)], id);
    return me.x === srv.x && me.y === srv.y && srv;
  }, { what: 'prediction to converge on the server position' });
  assert.equal(frames.at(-1)[1], settled.x, 'the last drawn frame was already exactly the server position');
  await page.close();
});

/**
 * Record every input message the page sends from now on (decoded), in
 * `window.__inputs`: JSON text, or binary (0x01, varint seq, x and y as
 * f64 little-endian) on playfield.v1.bin.
 */
function recordInputs(page) {
  return page.evaluate(() => {
    window.__inputs = [];
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) {
      if (typeof data === 'string') {
        const m = JSON.parse(data);
        if (m.type === 'input') window.__inputs.push(m.input);
      } else {
        const b = data instanceof Uint8Array ? data : new Uint8Array(data);
        if (b[0] === 0x01) {
          let i = 1;
          while (b[i] & 0x80) i++;
          const v = new DataView(b.buffer, b.byteOffset + i + 1, 16);
          window.__inputs.push({ x: v.getFloat64(0, true), y: v.getFloat64(8, true) });
        }
      }
      return send.call(this, data);
    };
  });
}

/** Dispatch keydown (or keyup) for several keys in one task, as if pressed together. */
function keys(page, type, codes) {
  return page.evaluate(({ type: t, codes: cs }) => {
    for (const code of cs) document.body.dispatchEvent(new KeyboardEvent(t, { code, key: code.slice(-1).toLowerCase(), bubbles: true, cancelable: true }));
  }, { type, codes });
}

test('W/A/S/D steer and two keys make a diagonal', async () => {
  const page = await openClient(context, server.url, 'wasd');
  const id = await page.evaluate(() => window.playfield.id);
  await until(() => serverPos(page, id));
  const start = await serverPos(page, id);
  const h = start.x < 250 ? 'KeyD' : 'KeyA';
  const v = start.y < 250 ? 'KeyS' : 'KeyW';
  const sx = h === 'KeyD' ? 1 : -1;
  const sy = v === 'KeyS' ? 1 : -1;
  await recordInputs(page);
  const m = await displacement(page, id, () => keys(page, 'keydown', [h, v]), () => keys(page, 'keyup', [h, v]), 400);
  // Inputs on the wire: the first keydown sends at once, so the first input may
  // carry only h; the first keyup may land on a send slot, so the last moving
  // one may carry only v; everything else is the diagonal, then one zero input.
  const sent = await page.evaluate(() => window.__inputs);
  const moving = sent.slice(0, -1);
  assert.deepEqual(sent.at(-1), { x: 0, y: 0 }, JSON.stringify(sent));
  const diagonal = moving.filter((d) => d.x === sx && d.y === sy).length;
  assert.ok(diagonal >= 5, `mostly diagonal inputs: ${JSON.stringify(sent)}`);
  moving.forEach((d, k) => {
    const ok = (d.x === sx && d.y === sy) || (k === 0 && d.x === sx && d.y === 0) || (k === moving.length - 1 && d.x === 0 && d.y === sy);
    assert.ok(ok, `input ${k} of ${JSON.stringify(sent)}`);
  });
  // And the server moved us accordingly: each diagonal step is 10/√2 on both axes.
  assert.equal(Math.sign(m.dx), sx, `horizontal ${JSON.stringify(m)}`);
  assert.equal(Math.sign(m.dy), sy, `vertical ${JSON.stringify(m)}`);
  assert.ok(Math.abs(Math.abs(m.dx) - Math.abs(m.dy)) <= 10 + 1e-3, `a diagonal: ${JSON.stringify(m)}`);
  const dist = Math.hypot(m.dx, m.dy);
  assert.ok(Math.abs(dist - 10 * moving.length) <= 10 + 1e-3, `diagonal is not faster: ${dist.toFixed(1)} px for ${moving.length} inputs`);
  await page.close();
});

test('holding an arrow key does not scroll a page that can scroll', async () => {
  const small = await browser.newContext({ viewport: { width: 400, height: 500 } });
  try {
    const page = await openClient(small, server.url, 'scroll');
    const max = await page.evaluate(() => document.documentElement.scrollHeight - innerHeight);
    assert.ok(max > 100, `the page scrolls at this size (${max}px)`);
    const y = await page.evaluate(() => { window.scrollTo(0, Math.round((document.documentElement.scrollHeight - innerHeight) / 2)); return window.scrollY; });
    assert.ok(y > 0);
    await page.keyboard.down('ArrowDown'); // real key events, auto-repeat included
    for (let k = 0; k < 10; k++) { await sleep(40); await page.keyboard.down('ArrowDown'); }
    await page.keyboard.up('ArrowDown');
    await sleep(200);
    assert.equal(await page.evaluate(() => window.scrollY), y);
    await page.close();
  } finally {
    await small.close();
  }
});

test('a key still held when the window gets focus back moves again on its auto-repeat', async () => {
  const page = await openClient(context, server.url, 'refocus');
  const start = await until(() => page.evaluate(() => window.playfield.me()));
  const key = start.x < 250 ? 'ArrowRight' : 'ArrowLeft';
  const dir = key === 'ArrowRight' ? 1 : -1;
  await page.keyboard.down(key);
  await sleep(200);
  await page.evaluate(() => window.dispatchEvent(new Event('blur'))); // keyup is never seen
  await sleep(200);
  const a = await page.evaluate(() => window.playfield.me());
  await sleep(200);
  const b = await page.evaluate(() => window.playfield.me());
  assert.equal(b.x, a.x, 'blur let go of the key');
  await page.evaluate(() => {
    window.__repeats = [];
    window.addEventListener('keydown', (e) => window.__repeats.push(e.repeat));
  });
  for (let k = 0; k < 6; k++) { await page.keyboard.down(key); await sleep(33); } // still held: repeats
  const repeats = await page.evaluate(() => window.__repeats);
  assert.deepEqual(repeats, [true, true, true, true, true, true], 'the browser marks them as repeats');
  await sleep(200);
  const c = await page.evaluate(() => window.playfield.me());
  await page.keyboard.up(key);
  assert.ok((c.x - b.x) * dir > 30, `moved again (${b.x} -> ${c.x})`);
  await page.close();
});

test('Enter or Space on a focused pad button moves exactly one step per press', async () => {
  const page = await openClient(context, server.url, 'padkeys');
  const id = await page.evaluate(() => window.playfield.id);
  const start = await until(() => serverPos(page, id));
  const btn = start.x < 250 ? '#btn-right' : '#btn-left';
  const dir = btn === '#btn-right' ? 1 : -1;
  await page.focus(btn);
  let m = await displacement(page, id, () => page.keyboard.press('Enter'), async () => {}, 100);
  assert.deepEqual([m.dx * dir, m.dy], [10, 0], `one press, one step: ${JSON.stringify(m)}`);
  // Three quick presses (faster than the tick rate): three steps.
  m = await displacement(page, id, async () => {
    await page.keyboard.press('Space');
    await page.keyboard.press('Enter');
    await page.keyboard.press('Space');
  }, async () => {}, 100);
  assert.deepEqual([m.dx * dir, m.dy], [30, 0], `three presses, three steps: ${JSON.stringify(m)}`);
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

test('landscape phone (844x390): board and pad both fit in the viewport, side by side', async () => {
  const phone = await browser.newContext({ viewport: { width: 844, height: 390 }, deviceScaleFactor: 2, hasTouch: true, isMobile: true });
  try {
    const page = await openClient(phone, server.url, 'landscape');
    const r = await page.evaluate(() => {
      const box = (el) => { const b = el.getBoundingClientRect(); return { left: b.left, top: b.top, right: b.right, bottom: b.bottom }; };
      return { vw: innerWidth, vh: innerHeight, scrollY, board: box(document.getElementById('board')), pad: box(document.querySelector('.pad')) };
    });
    const inside = (b) => b.left >= 0 && b.top >= 0 && b.right <= r.vw && b.bottom <= r.vh;
    assert.equal(r.scrollY, 0);
    assert.ok(inside(r.board), `board inside the viewport: ${JSON.stringify(r)}`);
    assert.ok(inside(r.pad), `pad inside the viewport: ${JSON.stringify(r)}`);
    assert.ok(r.pad.left >= r.board.right, `pad beside the board: ${JSON.stringify(r)}`);
    assert.ok(r.board.bottom - r.board.top > 250, `board still large: ${JSON.stringify(r)}`);
    await screenshot(page, 'client-phone-landscape');
  } finally {
    await phone.close();
  }
});

test('a page that closes disappears from the others once the resume grace period is over', async () => {
  // Closing a tab and reloading it look the same to the page (Chromium
  // closes the socket with 1001 either way), and a reload resumes its
  // player, so the server keeps a closed page's player for the grace period
  // (--resume-grace, 10 s by default; 2 s here).
  const short = await startServer({ args: ['--resume-grace', '2'] });
  try {
    const stay = await openClient(context, short.url, 'leave');
    const go = await openClient(context, short.url, 'leave');
    const goId = await go.evaluate(() => window.playfield.id);
    await until(() => stay.evaluate((id) => window.playfield.players().some((p) => p.id === id), goId), { what: 'second player drawn' });
    const t0 = Date.now();
    await go.close();
    await sleep(1000);
    assert.ok(await stay.evaluate((id) => window.playfield.serverPlayers().some((p) => p.id === id), goId), 'kept for a reload');
    await until(() => stay.evaluate((id) => !window.playfield.serverPlayers().some((p) => p.id === id)
      && !window.playfield.players().some((p) => p.id === id), goId), { what: 'leaver removed' });
    const took = Date.now() - t0;
    assert.ok(took >= 1500 && took < 5000, `removed ${took} ms after the page closed (grace 2 s)`);
    assert.equal((await stay.evaluate(() => window.playfield.players())).length, 1);
    await stay.close();
  } finally {
    await short.stop();
  }
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

test('an invalid ?room= is shown as such and joins no room until a valid one is picked', async () => {
  const page = await context.newPage();
  await page.goto(`${server.url}?room=bad%20name`);
  await page.waitForFunction(() => window.playfield?.status === 'error');
  await sleep(500);
  assert.equal(await page.evaluate(() => window.playfield.status), 'error', 'stays put: no connection to another room');
  assert.equal(await page.evaluate(() => window.playfield.id), null);
  assert.equal(await page.inputValue('#room-input'), 'bad name');
  assert.equal(await page.getAttribute('#room-input', 'aria-invalid'), 'true');
  assert.match(await page.textContent('#status-detail'), /“bad name”.*not a valid room name/);
  await page.fill('#room-input', 'good');
  await page.click('#room-join');
  await page.waitForFunction(() => window.playfield.status === 'connected' && window.playfield.room === 'good');
  assert.equal(await page.getAttribute('#room-input', 'aria-invalid'), 'false');
  assert.ok(page.url().endsWith('?room=good'), page.url());
  await page.close();
});

test('a welcome this page cannot use (missing world.speed, protocol 2) is an Error with the reason, not an endless Connecting', async () => {
  for (const [change, reason] of [
    [(o) => { delete o.world.speed; }, /Incompatible server: invalid welcome\.world\.speed/],
    [(o) => { o.protocol = 2; }, /Incompatible server: invalid protocol version 2/],
  ]) {
    const page = await context.newPage();
    let sockets = 0;
    await page.routeWebSocket(/\/ws(\?.*)?$/, (ws) => {
      sockets += 1;
      const upstream = ws.connectToServer();
      upstream.onMessage((m) => {
        if (typeof m !== 'string') return ws.send(m); // binary snapshots pass through
        const o = JSON.parse(m);
        if (o.type === 'welcome') change(o);
        ws.send(JSON.stringify(o));
      });
    });
    await page.goto(`${server.url}?room=incompatible`);
    await page.waitForFunction(() => window.playfield?.status === 'error', null, { timeout: 5000 });
    assert.match(await page.textContent('#status-detail'), reason);
    assert.deepEqual(await page.evaluate(() => window.playfield.statusHistory), ['connecting', 'error']);
    // Retried through the normal backoff path.
    await until(() => sockets >= 2, { what: 'a retry' });
    await page.close();
  }
});

test('a binary snapshot that does not decode is an Error with the reason, and the page reconnects', async () => {
  const page = await context.newPage();
  let sockets = 0;
  await page.routeWebSocket(/\/ws(\?.*)?$/, (ws) => {
    sockets += 1;
    const n = sockets;
    let binary = 0;
    const upstream = ws.connectToServer();
    upstream.onMessage((m) => {
      if (typeof m !== 'string') binary += 1;
      // The first connection's fifth snapshot carries a record with op 7, which does not exist.
      if (n === 1 && binary === 5) ws.send(Buffer.from([0x01, 0x05, 0x00, 0x00, 7 << 5]));
      else ws.send(m);
    });
  });
  await page.goto(`${server.url}?room=corrupt`);
  await page.waitForFunction(() => window.playfield?.status === 'error', null, { timeout: 10_000 });
  assert.match(await page.textContent('#status-detail'), /Reconnecting in \d+s… · Bad snapshot from the server: unknown record op 7/);
  await page.waitForFunction(() => window.playfield.status === 'connected', null, { timeout: 15_000 });
  assert.equal(sockets, 2);
  assert.deepEqual((await page.evaluate(() => window.playfield.statusHistory)).slice(0, 4), ['connecting', 'connected', 'error', 'connecting']);
  await until(() => page.evaluate(() => window.playfield.me()), { what: 'playing again' });
  await page.close();
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
