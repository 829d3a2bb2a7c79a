/**
 * The client survives a server restart: Disconnected, a visible countdown,
 * then Connected again with a new id, in the same page (no reload).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, launchBrowser, openClient, until, sleep, screenshot } from './helpers.js';

let server;
let browser;

after(async () => {
  await browser?.close();
  await server?.kill();
});

test('reconnects with backoff after the server restarts, without reloading', async () => {
  server = await startServer();
  const { port } = server;
  // Take ids 1-3 with bare seed-protocol sockets, so the page's id (4) cannot
  // coincide with the one the restarted server hands out.
  const squatters = [];
  for (let i = 0; i < 3; i++) {
    const ws = new WebSocket(`ws://${server.host}/`);
    await new Promise((resolve, reject) => { ws.once('message', resolve); ws.once('error', reject); });
    squatters.push(ws);
  }
  browser = await launchBrowser();
  const context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
  const page = await openClient(context, server.url);
  const firstId = await page.evaluate(() => window.playfield.id);
  assert.equal(firstId, 4);
  for (const ws of squatters) ws.close();
  await page.evaluate(() => { window.__marker = 'same page'; });

  await server.kill();
  await page.waitForFunction(() => window.playfield.status !== 'connected', null, { timeout: 10_000 });
  assert.equal(await page.evaluate(() => window.playfield.status), 'disconnected');
  assert.equal(await page.getAttribute('#status', 'data-status'), 'disconnected');
  const detail = await until(() => page.textContent('#status-detail').then((t) => /Reconnecting in \d+s…/.test(t) && t), { what: 'countdown' });
  assert.match(detail, /Reconnecting in [1-9]\d*s…/);
  assert.equal(await page.textContent('#player-id'), '—');
  await screenshot(page, 'reconnect-countdown');

  // Stay down long enough for at least one failed attempt, then come back on the same port.
  await sleep(1200);
  server = await startServer({ port });
  await page.waitForFunction(() => window.playfield.status === 'connected' && window.playfield.id !== null, null, { timeout: 20_000 });

  const newId = await page.evaluate(() => window.playfield.id);
  assert.notEqual(newId, firstId, 'a new session, a new id');
  // The page came back with its resume token: the restarted server does not
  // know it (4001), so the page joined as a new player.
  assert.equal(await page.evaluate(() => window.playfield.resumed), false);
  assert.equal(newId, 1);
  assert.equal(await page.textContent('#player-id'), String(newId));
  assert.equal(await page.evaluate(() => window.__marker), 'same page', 'the page did not reload');
  const history = await page.evaluate(() => window.playfield.statusHistory);
  assert.deepEqual(history.slice(0, 3), ['connecting', 'connected', 'disconnected']);
  assert.equal(history.at(-1), 'connected');
  assert.ok(history.filter((s) => s === 'connecting').length >= 2, history.join(' → '));
  // It works after reconnecting: the new server sees it and it sees itself.
  await until(() => page.evaluate((id) => window.playfield.players().some((p) => p.id === id), newId), { what: 'own dot after reconnect' });
  await screenshot(page, 'reconnect-connected');
});

test('a full room shows Error with the reason, retries, and gets in once there is space', async () => {
  const full = await startServer({ args: ['--room-capacity', '1'] });
  const b2 = await launchBrowser();
  try {
    const context = await b2.newContext();
    const first = await openClient(context, full.url, 'tiny');
    const second = await context.newPage();
    await second.goto(`${full.url}?room=tiny`);
    await second.waitForFunction(() => window.playfield?.status === 'error', null, { timeout: 10_000 });
    const detail = await until(() => second.textContent('#status-detail').then((t) => /Reconnecting in/.test(t) && t), { what: 'countdown' });
    assert.match(detail, /full/i, `the reason is shown: ${detail}`);
    assert.equal(await second.textContent('#status'), 'Error');
    await screenshot(second, 'room-full');
    await first.close();
    await second.waitForFunction(() => window.playfield.status === 'connected', null, { timeout: 20_000 });
    assert.equal(await second.evaluate(() => window.playfield.room), 'tiny');
  } finally {
    await b2.close();
    await full.stop();
  }
});

test('a silent link (server frozen with SIGSTOP, TCP still open) goes Disconnected within seconds and recovers', async () => {
  const frozen = await startServer();
  let b3;
  try {
    b3 = await launchBrowser();
    const page = await openClient(await b3.newContext(), frozen.url, 'frozen');
    const firstId = await page.evaluate(() => window.playfield.id);
    await until(() => page.evaluate(() => window.playfield.me()), { what: 'own dot' });

    // Freeze the server: the socket stays open, nothing more arrives and no close ever comes.
    frozen.signal('SIGSTOP');
    const t0 = Date.now();
    await page.waitForFunction(() => window.playfield.status !== 'connected', null, { timeout: 8000, polling: 100 });
    const took = Date.now() - t0;
    assert.equal(await page.evaluate(() => window.playfield.status), 'disconnected');
    assert.ok(took >= 2000 && took <= 5000, `noticed after ${took} ms (expected ~3 s of silence)`);
    const detail = await page.textContent('#status-detail');
    assert.match(detail, /Reconnecting in \d+s… · Nothing heard from the server for \d+s/);
    assert.equal(await page.textContent('#player-id'), '—');

    // Still frozen: the kernel accepts the next TCP connection but the WebSocket
    // handshake never completes. That attempt is abandoned after ~5 s too.
    await page.waitForFunction(() => window.playfield.status === 'error', null, { timeout: 12_000, polling: 100 });
    assert.match(await page.textContent('#status-detail'), /No answer from the server/);

    // Thaw it: the next attempt gets in, on the same page.
    frozen.signal('SIGCONT');
    await page.waitForFunction(() => window.playfield.status === 'connected' && window.playfield.id !== null, null, { timeout: 20_000 });
    // Same player or a new one, and the page knows which. The page offered
    // its resume token on every attempt, including the one it gave up on
    // while the server was frozen; the thawed server may still take that
    // abandoned handshake from its backlog and spend the token on it (the
    // browser has closed that socket), and then the next attempt's token is
    // refused as used (4001) and the page joins as a new player at once.
    // Which one happens first is up to the thawed server.
    const newId = await page.evaluate(() => window.playfield.id);
    const resumed = await page.evaluate(() => window.playfield.resumed);
    assert.equal(newId === firstId, resumed, `id ${firstId} → ${newId}, resumed: ${resumed}`);
    if (!resumed) assert.match(await page.textContent('#status-detail'), /new player/);
    const history = await page.evaluate(() => window.playfield.statusHistory);
    assert.deepEqual(history.slice(0, 5), ['connecting', 'connected', 'disconnected', 'connecting', 'error'], history.join(' → '));
    assert.equal(history.at(-1), 'connected');
    await until(() => page.evaluate((id) => window.playfield.players().some((p) => p.id === id), newId), { what: 'own dot after reconnect' });
    assert.deepEqual(page.__errors ?? [], []);
  } finally {
    frozen.signal('SIGCONT'); // never leave a stopped process behind
    try {
      await b3?.close();
    } finally {
      await frozen.kill();
    }
  }
});
