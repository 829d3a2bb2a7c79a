/**
 * Resume tokens in the browser: a page whose socket drops reconnects by
 * itself and gets the same player back (id, colour, position), without a
 * reload, and the other players never see it leave. Also: a reload keeps
 * the dot, a takeover (4002) stops and waits for the user, a refused token
 * (4001) becomes a new player at once, switching rooms leaves for good.
 *
 * Links are broken with a TCP proxy between Chromium and the server
 * (helpers.js startTcpProxy), so the page uses its real WebSocket: a drop
 * is a TCP reset (close 1006, no close frame either way); a black hole lets
 * nothing through from the server until the page's watchdog gives up. The
 * other players are a `ws` client on the native JSON protocol, connected
 * straight to the server, that records every snapshot.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import {
  startServer, launchBrowser, openClient, until, sleep, screenshot, startTcpProxy,
} from './helpers.js';

// The server's session log says how each connection ended ("client closed
// (4000)"): the tests read it to check the close codes the page sends.
process.env.RUST_LOG = 'warn,playfield::session=info';

const JSON_PROTO = 'playfield.v1.json';
const TOKEN_RE = /^[0-9a-f]{32}$/;

let server;
let browser;
let context;
const proxies = [];

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
});

after(async () => {
  await browser?.close();
  for (const p of proxies) await p.close();
  await server?.kill();
});

async function proxyTo(s) {
  const p = await startTcpProxy(s.host);
  proxies.push(p);
  return p;
}

/**
 * A native JSON client in `room` (another player) that records every
 * snapshot: `{at, tick, players: Map(id → {x, y, color})}`. With `resume`,
 * it connects with that token.
 */
async function watcher(host, room, resume = null) {
  const query = `room=${room}${resume ? `&resume=${resume}` : ''}`;
  const ws = new WebSocket(`ws://${host}/ws?${query}`, [JSON_PROTO]);
  const w = { ws, welcome: null, error: null, closed: null, snapshots: [] };
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    const m = JSON.parse(data.toString());
    if (m.type === 'welcome') w.welcome = m;
    else if (m.type === 'error') w.error = m;
    else if (m.type === 'snapshot') {
      w.snapshots.push({ at: Date.now(), tick: m.tick, players: new Map(m.state.players.map((p) => [p.id, p])) });
    }
  });
  ws.on('close', (code, reason) => { w.closed = { code, reason: reason.toString() }; });
  ws.on('error', () => {});
  await until(() => w.welcome || w.closed, { what: 'watcher welcome' });
  assert.ok(w.welcome, `watcher refused: ${JSON.stringify(w.error ?? w.closed)}`);
  return w;
}

/** Ticks of the snapshots, since `id` first appeared, that did not have it. */
function absences(w, id) {
  const first = w.snapshots.findIndex((s) => s.players.has(id));
  assert.ok(first >= 0, `the watcher never saw player ${id}`);
  return w.snapshots.slice(first).filter((s) => !s.players.has(id)).map((s) => s.tick);
}

/**
 * The page's own player as the server last sent it, and whether it was
 * resumed (waits for the connection's first snapshot).
 */
function self(page) {
  return until(() => page.evaluate(() => {
    const { id } = window.playfield;
    const p = window.playfield.serverPlayers().find((q) => q.id === id);
    return p ? { id, x: p.x, y: p.y, color: p.color, resumed: window.playfield.resumed } : null;
  }), { what: 'own player in a snapshot' });
}

/** The `seq` of an input frame the page sent (binary or JSON), or null for other frames. */
function inputSeq(payload) {
  if (typeof payload === 'string') {
    const m = JSON.parse(payload);
    return m.type === 'input' ? m.seq : null;
  }
  if (payload[0] !== 0x01) return null; // binary `input`: 0x01, seq (varint), x, y (f64)
  let seq = 0;
  for (let i = 1, k = 1; i < payload.length; i++, k *= 128) {
    seq += (payload[i] & 0x7f) * k;
    if (payload[i] < 0x80) break;
  }
  return seq;
}

/**
 * Records every WebSocket the page opens from now on: url, when, the
 * `error` frames it got, the input seqs it sent, when it closed.
 */
function recordSockets(page) {
  const sockets = [];
  page.on('websocket', (ws) => {
    const r = { url: ws.url(), opened: Date.now(), errors: [], errorAt: null, seqs: [], closed: null };
    sockets.push(r);
    ws.on('framesent', (f) => {
      const seq = inputSeq(f.payload);
      if (seq !== null) r.seqs.push(seq);
    });
    ws.on('framereceived', (f) => {
      if (typeof f.payload === 'string' && f.payload.includes('"type":"error"')) {
        r.errors.push(JSON.parse(f.payload));
        r.errorAt ??= Date.now();
      }
    });
    ws.on('close', () => { r.closed = Date.now(); });
  });
  return sockets;
}

/** Open our client in `room` at `base`, recording its sockets from the first one. */
async function open(base, room) {
  const page = await context.newPage();
  page.on('pageerror', (err) => { page.__errors = [...(page.__errors || []), err]; });
  const sockets = recordSockets(page);
  await page.goto(`${base}?room=${room}`);
  await page.waitForFunction(() => window.playfield?.status === 'connected' && window.playfield.id !== null, null, { timeout: 15_000 });
  return { page, sockets };
}

const storedToken = (page, room) => page.evaluate((r) => sessionStorage.getItem(`playfield.resume:${r}`), room);

/**
 * Hold a key for `ms` (towards the middle, so the dot really moves), then
 * wait until the drawn dot rests exactly on the server's position, and
 * return the page's own player then.
 */
async function moveAndSettle(page, ms = 300) {
  const start = await self(page);
  const key = start.x < 250 ? 'ArrowRight' : 'ArrowLeft';
  await page.keyboard.down(key);
  await sleep(ms);
  await page.keyboard.up(key);
  let prev = null;
  const end = await until(async () => {
    const s = await self(page);
    const me = await page.evaluate(() => window.playfield.me());
    const still = s && me && me.x === s.x && me.y === s.y && prev && prev.x === s.x && prev.y === s.y;
    prev = s;
    return still && s;
  }, { interval: 100, what: 'own dot to settle on the server position' });
  assert.ok(Math.abs(end.x - start.x) >= 30, `the dot moved: ${JSON.stringify({ start, end })}`);
  return end;
}

const serverLog = (s) => s.output();

test('a dropped socket: the page resumes by itself (same id, colour, position), the others never see it leave', async () => {
  const proxy = await proxyTo(server);
  const watch = await watcher(server.host, 'drop');
  const { page, sockets } = await open(proxy.url, 'drop');
  await page.evaluate(() => { window.__marker = 'same page'; });
  const id = await page.evaluate(() => window.playfield.id);
  assert.equal(await page.evaluate(() => window.playfield.resumed), false);
  await until(() => watch.snapshots.at(-1)?.players.has(id), { what: 'the watcher to see the page' });
  const before = await moveAndSettle(page);
  const token = await storedToken(page, 'drop');
  assert.match(token, TOKEN_RE);

  // Cut the link: TCP reset both ways, no close frame.
  const droppedAt = Date.now();
  proxy.drop();
  await page.waitForFunction(() => window.playfield.status !== 'connected', null, { timeout: 5000, polling: 20 });
  assert.equal(await page.evaluate(() => window.playfield.status), 'disconnected');
  await page.waitForFunction(() => window.playfield.status === 'connected' && window.playfield.resumed, null, { timeout: 10_000 });
  const resumedAt = Date.now();

  const after = await self(page);
  assert.deepEqual(after, { ...before, resumed: true }, 'same id, same place, same colour');
  assert.equal(await page.textContent('#player-id'), String(id));
  assert.equal(await page.evaluate(() => window.__marker), 'same page', 'the page did not reload');
  assert.deepEqual(await page.evaluate(() => window.playfield.statusHistory),
    ['connecting', 'connected', 'disconnected', 'connecting', 'connected']);
  assert.match(await page.textContent('#status-detail'), /same player/);
  // It came back with the token, and holds the new one now (each works once).
  assert.equal(sockets.length, 2, sockets.map((s) => s.url).join(' '));
  assert.equal(new URL(sockets[0].url).searchParams.get('resume'), null);
  assert.equal(new URL(sockets[1].url).searchParams.get('resume'), token);
  assert.equal(new URL(sockets[1].url).searchParams.get('room'), 'drop');
  const newToken = await storedToken(page, 'drop');
  assert.match(newToken, TOKEN_RE);
  assert.notEqual(newToken, token);

  // The other player saw it all along, standing where it was.
  assert.deepEqual(absences(watch, id), [], 'never missing from the watcher\'s snapshots');
  const during = watch.snapshots.filter((s) => s.at > droppedAt && s.at < resumedAt);
  assert.ok(during.length >= 3, `the watcher kept receiving snapshots during the drop (${during.length})`);
  for (const s of during) {
    const p = s.players.get(id);
    assert.deepEqual({ x: p.x, y: p.y, color: p.color }, { x: before.x, y: before.y, color: before.color });
  }
  const log = serverLog(server);
  assert.match(log, new RegExp(`Player ${id} lost its connection; kept`));
  assert.match(log, new RegExp(`Player ${id} resumed\\.`));

  // And it plays on, counting inputs on above the last seq of the old connection.
  const moved = await moveAndSettle(page);
  const sent = sockets[0].seqs;
  assert.ok(sent.length > 0);
  assert.equal(sockets[1].seqs[0], Math.max(...sent) + 1, `seqs ${sent.join(',')} then ${sockets[1].seqs.join(',')}`);
  await until(() => {
    const p = watch.snapshots.at(-1).players.get(id);
    return p.x === moved.x && p.y === moved.y;
  }, { what: 'the watcher to see the move' });
  assert.deepEqual(page.__errors ?? [], []);
  await screenshot(page, 'resume-after-drop');
  watch.ws.close();
  await page.close();
});

test('a silent link: the watchdog closes with 4000 (not 1000), the server keeps the player, the page resumes it', async () => {
  const proxy = await proxyTo(server);
  const watch = await watcher(server.host, 'silent');
  const page = await openClient(context, proxy.url, 'silent');
  const before = await self(page);
  await until(() => watch.snapshots.at(-1)?.players.has(before.id), { what: 'the watcher to see the page' });

  // Nothing more from the server on this connection; no event in the page.
  proxy.blackhole();
  await page.waitForFunction(() => window.playfield.status === 'disconnected', null, { timeout: 8000, polling: 50 });
  assert.match(await page.textContent('#status-detail'), /Nothing heard from the server/);
  await page.waitForFunction(() => window.playfield.status === 'connected' && window.playfield.resumed, null, { timeout: 10_000 });

  assert.deepEqual(await self(page), { ...before, resumed: true });
  assert.deepEqual(absences(watch, before.id), []);
  // The page's close frame went through: the server was told "coming back".
  const log = serverLog(server);
  assert.match(log, new RegExp(`Player ${before.id} lost its connection; kept [\\d.]+ s for a resume.*reason=client closed \\(4000\\)`));
  assert.doesNotMatch(log, new RegExp(`Player ${before.id} disconnected`));
  watch.ws.close();
  await page.close();
});

test('a reload within the grace period keeps the dot (the token is in sessionStorage)', async () => {
  const watch = await watcher(server.host, 'reload');
  const { page, sockets } = await open(server.url, 'reload');
  const id = await page.evaluate(() => window.playfield.id);
  await until(() => watch.snapshots.at(-1)?.players.has(id), { what: 'the watcher to see the page' });
  const before = await moveAndSettle(page);

  await page.reload();
  await page.waitForFunction(() => window.playfield?.status === 'connected' && window.playfield.id !== null, null, { timeout: 15_000 });
  assert.deepEqual(await self(page), { ...before, resumed: true });
  assert.deepEqual(await page.evaluate(() => window.playfield.statusHistory), ['connecting', 'connected']);
  assert.deepEqual(absences(watch, id), []);
  // The new page counts inputs on from the server's last_seq.
  await moveAndSettle(page);
  assert.equal(sockets.length, 2);
  assert.equal(sockets[1].seqs[0], Math.max(...sockets[0].seqs) + 1, `seqs ${sockets[0].seqs.join(',')} then ${sockets[1].seqs.join(',')}`);
  watch.ws.close();
  await page.close();
});

test('taken over by another connection (4002): "Playing in another tab", no reconnect by itself; "Play here" joins as a new player', async () => {
  const page = await openClient(context, server.url, 'takeover');
  const id = await page.evaluate(() => window.playfield.id);
  const token = await storedToken(page, 'takeover');
  const sockets = recordSockets(page);

  // Another connection resumes our player with our token (another tab, a copied token).
  const other = await watcher(server.host, 'takeover', token);
  assert.equal(other.welcome.resumed, true);
  assert.equal(other.welcome.id, id);
  await page.waitForFunction(() => window.playfield.status === 'elsewhere', null, { timeout: 5000 });
  assert.equal(await page.textContent('#status'), 'Playing in another tab');
  assert.match(await page.textContent('#status-detail'), /resumed on another connection/);
  assert.equal(await page.textContent('#player-id'), '—');
  assert.ok(await page.isVisible('#play-here'), 'a way to play here again');
  assert.equal(await storedToken(page, 'takeover'), null, 'the spent token is forgotten');
  await screenshot(page, 'resume-elsewhere');

  // It stays put: no new socket, the other connection keeps the player.
  await sleep(3000);
  assert.equal(await page.evaluate(() => window.playfield.status), 'elsewhere');
  assert.equal((await page.evaluate(() => window.playfield.statusHistory)).at(-1), 'elsewhere');
  assert.equal(sockets.length, 0, 'no reconnection by itself');
  assert.equal(other.closed, null);
  assert.ok(other.snapshots.at(-1).players.has(id));

  // "Play here": a new player in the same room; the other connection is left alone.
  await page.click('#play-here');
  await page.waitForFunction(() => window.playfield.status === 'connected', null, { timeout: 10_000 });
  const mine = await self(page);
  assert.notEqual(mine.id, id);
  assert.equal(mine.resumed, false);
  assert.equal(await page.isVisible('#play-here'), false);
  assert.equal(sockets.length, 1);
  assert.equal(new URL(sockets[0].url).searchParams.get('resume'), null, 'the spent token is not offered');
  await until(() => other.snapshots.at(-1).players.has(mine.id), { what: 'both players in the room' });
  await sleep(500);
  assert.equal(other.closed, null, 'no ping-pong: the other connection keeps its player');
  assert.ok(other.snapshots.at(-1).players.has(id));
  other.ws.close();
  await page.close();
});

test('a token the restarted server does not know is refused (4001): a new player at once, no backoff, no Error', async () => {
  let s = await startServer();
  try {
    const { port } = s;
    const page = await openClient(context, s.url, 'restart');
    const token = await storedToken(page, 'restart');
    await page.evaluate(() => {
      window.__statusLog = [];
      const el = document.getElementById('status');
      new MutationObserver(() => window.__statusLog.push({ status: el.dataset.status, t: Date.now() }))
        .observe(el, { attributes: true, attributeFilter: ['data-status'] });
    });
    const sockets = recordSockets(page);

    await s.kill();
    await page.waitForFunction(() => window.playfield.status !== 'connected', null, { timeout: 10_000 });
    s = await startServer({ port });
    await page.waitForFunction(() => window.playfield.status === 'connected', null, { timeout: 20_000 });

    const refused = sockets.find((r) => r.errors.length > 0);
    assert.ok(refused, `one attempt was refused: ${JSON.stringify(sockets)}`);
    assert.equal(new URL(refused.url).searchParams.get('resume'), token);
    assert.equal(refused.errors[0].code, 'resume_invalid');
    const fresh = sockets.at(-1);
    assert.notEqual(fresh, refused);
    assert.equal(sockets.indexOf(fresh), sockets.indexOf(refused) + 1, 'the very next attempt');
    assert.equal(new URL(fresh.url).searchParams.get('resume'), null, 'the refused token is forgotten');
    // At once: the backoff's shortest wait at this point is 500 ms.
    const gap = fresh.opened - refused.errorAt;
    assert.ok(gap < 400, `new player ${gap} ms after the refusal`);
    // Connecting all the way, never Error or Disconnected, after the refusal.
    const log = await page.evaluate(() => window.__statusLog);
    const since = log.filter((e) => e.t >= refused.errorAt).map((e) => e.status);
    assert.ok(since.every((st) => st === 'connecting' || st === 'connected'), since.join(' → '));
    assert.equal(await page.evaluate(() => window.playfield.resumed), false);
    assert.match(await page.textContent('#status-detail'), /new player/);
    assert.match(await storedToken(page, 'restart'), TOKEN_RE);
    assert.notEqual(await storedToken(page, 'restart'), token);
    await until(() => page.evaluate(() => window.playfield.me()), { what: 'own dot' });
    await page.close();
  } finally {
    await s.kill();
  }
});

test('a stale token in sessionStorage on load: refused, then a new player straight away', async () => {
  const page = await context.newPage();
  await page.goto(`${server.url}favicon-none`).catch(() => {}); // same origin, to write its storage
  await page.evaluate(() => sessionStorage.setItem('playfield.resume:stale', '0123456789abcdef0123456789abcdef'));
  const sockets = recordSockets(page);
  const t0 = Date.now();
  await page.goto(`${server.url}?room=stale`);
  await page.waitForFunction(() => window.playfield?.status === 'connected', null, { timeout: 10_000 });
  assert.ok(Date.now() - t0 < 3000, `connected after ${Date.now() - t0} ms`);
  assert.deepEqual(await page.evaluate(() => window.playfield.statusHistory), ['connecting', 'connected']);
  assert.equal(sockets.length, 2);
  assert.equal(sockets[0].errors[0]?.code, 'resume_invalid');
  assert.equal(new URL(sockets[1].url).searchParams.get('resume'), null);
  await page.close();
});

test('switching rooms leaves for good: close 1000, the old player vanishes at once, its token is not sent to the new room', async () => {
  const watch = await watcher(server.host, 'switch1');
  const page = await openClient(context, server.url, 'switch1');
  const id = await page.evaluate(() => window.playfield.id);
  await until(() => watch.snapshots.at(-1)?.players.has(id), { what: 'the watcher to see the page' });
  const sockets = recordSockets(page);

  await page.fill('#room-input', 'switch2');
  const t0 = Date.now();
  await page.click('#room-join');
  await until(() => !watch.snapshots.at(-1).players.has(id), { what: 'the old player to leave switch1', timeout: 5000 });
  const took = Date.now() - t0;
  assert.ok(took < 2000, `gone from the old room after ${took} ms (not after the 10 s grace)`);
  await page.waitForFunction(() => window.playfield.status === 'connected' && window.playfield.room === 'switch2');
  assert.equal(await page.evaluate(() => window.playfield.resumed), false);
  assert.equal(sockets.length, 1);
  assert.equal(new URL(sockets[0].url).searchParams.get('room'), 'switch2');
  assert.equal(new URL(sockets[0].url).searchParams.get('resume'), null);
  assert.equal(await storedToken(page, 'switch1'), null);
  assert.match(await storedToken(page, 'switch2'), TOKEN_RE);
  assert.match(serverLog(server), new RegExp(`Player ${id} disconnected\\..*reason=client closed \\(1000\\)`));
  watch.ws.close();
  await page.close();
});

test('a server that does not resume (--resume-grace 0): no token, a drop gives a new player', async () => {
  const s = await startServer({ args: ['--resume-grace', '0'] });
  try {
    const proxy = await proxyTo(s);
    const page = await openClient(context, proxy.url, 'nograce');
    const id = await page.evaluate(() => window.playfield.id);
    assert.equal(await storedToken(page, 'nograce'), null);
    const sockets = recordSockets(page);
    proxy.drop();
    await page.waitForFunction((old) => window.playfield.status === 'connected' && window.playfield.id !== old, id, { timeout: 10_000 });
    assert.equal(await page.evaluate(() => window.playfield.resumed), false);
    assert.equal(new URL(sockets[0].url).searchParams.get('resume'), null);
    await page.close();
  } finally {
    await s.kill();
  }
});
