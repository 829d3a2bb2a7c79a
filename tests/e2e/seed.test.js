/**
 * The seed's own client.html, byte for byte, plays against our server.
 *
 * It hard-codes ws://127.0.0.1:8765 and our server runs on an ephemeral
 * port, so its socket is routed (page.routeWebSocket) to a `ws` connection
 * opened from node to the real server, frames and closes piped both ways.
 * Its Tailwind CDN request is aborted: there is no internet here.
 *
 * The seed is not part of this repository: it is read from `../shared/seed/`
 * beside the checkout, or from the directory in PLAYFIELD_SEED_DIR. Without
 * it these tests are skipped with a message saying so, except in CI
 * (CI=true), where a missing seed fails them.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  ROOT, startServer, launchBrowser, openClient, until, sleep, screenshot, pipeWebSocket,
} from './helpers.js';

const SEED_DIR = process.env.PLAYFIELD_SEED_DIR
  ? path.resolve(process.env.PLAYFIELD_SEED_DIR)
  : path.resolve(ROOT, '../shared/seed');
const SEED = path.join(SEED_DIR, 'client.html');
const IN_CI = !['', '0', 'false'].includes((process.env.CI || '').toLowerCase());
/** Why these tests are skipped, or false: only outside CI, only without the seed. */
const skip = !IN_CI && !existsSync(SEED)
  && `the seed client is not at ${SEED}; set PLAYFIELD_SEED_DIR to a directory holding the seed's client.html to run it`;
if (skip) console.warn(`seed.test.js: skipping: ${skip}`);

let server;
let browser;
let context;

before(async () => {
  if (skip) return;
  assert.ok(existsSync(SEED), `the seed client must exist at ${SEED} (CI=true: set PLAYFIELD_SEED_DIR to a copy of the seed, or put it in ../shared/seed/)`);
  server = await startServer();
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 800, height: 1100 } });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Open the seed page with its socket piped to our server. */
async function openSeed() {
  const page = await context.newPage();
  const upstreams = new Set();
  await page.route(/^https?:\/\/(?!127\.0\.0\.1)/, (route) => route.abort());
  await page.routeWebSocket(/^ws:\/\/127\.0\.0\.1:8765\/?$/, (route) => {
    // No subprotocol, like the real page: the server speaks the seed protocol.
    const upstream = pipeWebSocket(route, `ws://${server.host}/`);
    upstreams.add(upstream);
    upstream.on('close', () => upstreams.delete(upstream));
  });
  // Closing the page must close its upstream socket, like a real tab.
  page.on('close', () => { for (const u of upstreams) u.close(); });
  await page.goto(pathToFileURL(SEED).href);
  await page.waitForFunction(() => /^\d+$/.test(document.getElementById('player-id').textContent), null, { timeout: 15_000 });
  return page;
}

/** The seed page's own dot position, parsed from its CSS transform. */
function seedDot(page) {
  return page.evaluate(() => {
    const id = document.getElementById('player-id').textContent;
    const dot = document.querySelector(`.player-dot[data-id="${id}"]`);
    if (!dot) return null;
    const m = dot.style.transform.match(/translate\((-?[\d.]+)px, (-?[\d.]+)px\)/);
    return { x: Number(m[1]) + 10, y: Number(m[2]) + 10 };
  });
}

/** Hold `press()` for `ms`, release, and return how the seed's dot moved once it settles. */
async function seedMove(page, press, release, ms = 300) {
  const a = await seedDot(page);
  await press();
  await sleep(ms);
  await release();
  let prev = null;
  const b = await until(async () => {
    const p = await seedDot(page);
    const same = prev && p.x === prev.x && p.y === prev.y;
    prev = p;
    return same && p;
  }, { interval: 150, what: 'seed dot to settle' });
  return { dx: b.x - a.x, dy: b.y - a.y };
}

test('the seed client joins, sees itself and a native player, moves, and leaves cleanly', { skip }, async () => {
  const seed = await openSeed();
  const seedId = await seed.textContent('#player-id');
  assert.equal(await seed.textContent('#status'), 'Connected');
  const native = await openClient(context, server.url); // default room: lobby, like the seed
  const nativeId = await native.evaluate(() => window.playfield.id);

  // The seed page draws its own dot and the native player's.
  await until(() => seed.evaluate(() => document.querySelectorAll('.player-dot').length === 2), { what: 'two dots in the seed page' });
  const ids = await seed.evaluate(() => [...document.querySelectorAll('.player-dot')].map((d) => d.dataset.id).sort());
  assert.deepEqual(ids, [seedId, String(nativeId)].sort());
  // ... and the native page sees the seed player (ids are numbers there).
  await until(() => native.evaluate((id) => window.playfield.players().some((p) => p.id === id), Number(seedId)), { what: 'seed player in native page' });

  // Keep away from the walls so every move is visible.
  const start = await seedDot(seed);
  assert.ok(start, 'own dot drawn');

  // W/A/S/D (the seed lower-cases e.key, so these are the keys that work there).
  const key = async (k, dir) => {
    const m = await seedMove(seed, () => seed.keyboard.down(k), () => seed.keyboard.up(k));
    const [along, across] = dir === 'x' ? [m.dx, m.dy] : [m.dy, m.dx];
    return { along, across };
  };
  // Move away from the nearer wall first so each step is visible, then back.
  const checks = {
    d: (m) => m.along >= 30, a: (m) => m.along <= -30, s: (m) => m.along >= 30, w: (m) => m.along <= -30,
  };
  const order = [...(start.x < 250 ? ['d', 'a'] : ['a', 'd']), ...(start.y < 250 ? ['s', 'w'] : ['w', 's'])];
  for (const k of order) {
    const m = await key(k, k === 'a' || k === 'd' ? 'x' : 'y');
    assert.ok(checks[k](m) && m.across === 0, `${k} moved the dot: ${JSON.stringify(m)}`);
  }

  // Its on-screen buttons, with the mouse.
  const button = async (sel) => {
    const box = await seed.locator(sel).boundingBox();
    return seedMove(seed,
      async () => { await seed.mouse.move(box.x + box.width / 2, box.y + box.height / 2); await seed.mouse.down(); },
      () => seed.mouse.up());
  };
  const bChecks = {
    '#right-btn': (m) => m.dx >= 30 && m.dy === 0,
    '#left-btn': (m) => m.dx <= -30 && m.dy === 0,
    '#down-btn': (m) => m.dy >= 30 && m.dx === 0,
    '#up-btn': (m) => m.dy <= -30 && m.dx === 0,
  };
  const here = await seedDot(seed);
  const bOrder = [
    ...(here.x < 250 ? ['#right-btn', '#left-btn'] : ['#left-btn', '#right-btn']),
    ...(here.y < 250 ? ['#down-btn', '#up-btn'] : ['#up-btn', '#down-btn']),
  ];
  for (const sel of bOrder) {
    const m = await button(sel);
    assert.ok(bChecks[sel](m), `${sel} moved the dot: ${JSON.stringify(m)}`);
  }

  // The native page agrees on where the seed player ended up.
  const end = await seedDot(seed);
  await until(() => native.evaluate(({ id, x, y }) => {
    const p = window.playfield.serverPlayers().find((q) => q.id === id);
    return p && p.x === x && p.y === y;
  }, { id: Number(seedId), ...end }), { what: 'native page to agree on the seed position' });

  await screenshot(seed, 'seed-client');
  await screenshot(native, 'seed-with-native');

  // Closing the seed page removes its player.
  await seed.close();
  await until(() => native.evaluate((id) => !window.playfield.serverPlayers().some((p) => p.id === id)
    && !window.playfield.players().some((p) => p.id === id), Number(seedId)), { what: 'seed player removed' });
  await native.close();
});

test('two seed pages see each other', { skip }, async () => {
  const a = await openSeed();
  const b = await openSeed();
  const ids = [await a.textContent('#player-id'), await b.textContent('#player-id')];
  assert.notEqual(ids[0], ids[1]);
  for (const page of [a, b]) {
    await until(() => page.evaluate(() => document.querySelectorAll('.player-dot').length === 2), { what: 'two dots' });
    const seen = await page.evaluate(() => [...document.querySelectorAll('.player-dot')].map((d) => d.dataset.id).sort());
    assert.deepEqual(seen, [...ids].sort());
  }
  await a.close();
  await until(() => b.evaluate(() => document.querySelectorAll('.player-dot').length === 1), { what: 'leaver removed from the other seed page' });
  await b.close();
});
