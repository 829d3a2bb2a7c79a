/**
 * Hundreds of players stay smooth: 200 moving bots in one room, and the page
 * keeps rendering everyone at a fluid frame rate.
 *
 * CI runs this on a shared 2-core machine where Chromium, the server and the
 * 200 bot sockets (40 MB/s of snapshots) compete for CPU, so the bar is "at
 * least 30 fps on most frames" (median frame interval under 34 ms; rAF
 * timestamps come in whole vsyncs, 16.7 or 33.3 ms), not "every frame at 60".
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, launchBrowser, openClient, until, screenshot } from './helpers.js';

const BOTS = 200;
let server;
let browser;
const bots = [];
let timer;

after(async () => {
  clearInterval(timer);
  for (const b of bots) b.terminate();
  await browser?.close();
  await server?.stop();
});

test(`${BOTS} moving players render smoothly`, async () => {
  server = await startServer({ args: ['--room-capacity', String(BOTS + 8)] });
  for (let i = 0; i < BOTS; i++) {
    const ws = new WebSocket(`ws://${server.host}/ws?room=crowd`, ['playfield.v1.json']);
    ws.on('error', () => {});
    bots.push(ws);
  }
  await until(() => bots.every((b) => b.readyState === WebSocket.OPEN), { what: 'bots connected' });
  // Each bot wanders: one input per tick, changing direction now and then.
  let seq = 0;
  const dirs = bots.map((_, i) => ({ x: (i % 3) - 1, y: (Math.floor(i / 3) % 3) - 1 }));
  timer = setInterval(() => {
    seq += 1;
    bots.forEach((b, i) => {
      if (seq % 20 === i % 20) dirs[i] = { x: dirs[i].y, y: -dirs[i].x };
      b.send(JSON.stringify({ type: 'input', seq, input: dirs[i] }));
    });
  }, 50);

  browser = await launchBrowser();
  const context = await browser.newContext({ viewport: { width: 900, height: 1000 }, deviceScaleFactor: 2 });
  const page = await openClient(context, server.url, 'crowd');
  await until(() => page.evaluate((n) => window.playfield.players().length === n, BOTS + 1), { what: 'everyone drawn', timeout: 15_000 });

  const frames = await page.evaluate(() => new Promise((resolve) => {
    const gaps = [];
    let last = performance.now();
    const f = (t) => {
      gaps.push(t - last);
      last = t;
      if (gaps.length < 120) requestAnimationFrame(f); else resolve(gaps);
    };
    requestAnimationFrame(f);
  }));
  frames.sort((a, b) => a - b);
  const median = frames[frames.length >> 1];
  assert.ok(median < 34, `median frame interval ${median.toFixed(1)} ms with ${BOTS + 1} players (need ≥ 30 fps)`);
  // Everyone was still being drawn while we measured.
  assert.equal(await page.evaluate(() => window.playfield.players().length), BOTS + 1);
  await screenshot(page, 'crowd');
});
