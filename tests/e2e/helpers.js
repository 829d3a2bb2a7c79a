/**
 * Shared plumbing for the browser end-to-end tests: start a real Playfield
 * server on an ephemeral loopback port, launch Debian's Chromium through
 * playwright-core, poll for conditions, save screenshots.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdirSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.PLAYFIELD_BIN || path.join(ROOT, 'target/release/playfield');
export const SHOTS = path.join(ROOT, 'test-artifacts/screenshots');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/**
 * Spawn the server and resolve once it prints its address.
 * @param {{port?: number, args?: string[]}} opts  port 0 = ephemeral
 * `signal(name)` sends a signal without waiting (SIGSTOP/SIGCONT freeze and
 * thaw the process: its sockets stay open but nothing is read or sent).
 * `stop`/`kill` also thaw a frozen server first, so it can exit.
 * @returns {Promise<{url: string, host: string, port: number, pid: number, signal: (sig: string) => void, stop: () => Promise<void>, kill: () => Promise<void>, output: () => string}>}
 */
export function startServer({ port = 0, args = [] } = {}) {
  if (!existsSync(BIN)) {
    throw new Error(`server binary not found at ${BIN}: run \`cargo build --release\` or set PLAYFIELD_BIN`);
  }
  const child = spawn(BIN, ['--host', '127.0.0.1', '--port', String(port), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  let out = '';
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const running = () => child.exitCode === null && child.signalCode === null;
  const stopWith = (signal) => async () => {
    if (running()) {
      if (signal !== 'SIGKILL') child.kill('SIGCONT'); // a stopped process ignores SIGTERM
      child.kill(signal);
    }
    await exited;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not print its address within 15 s:\n${out}`));
    }, 15_000);
    const onData = (buf) => {
      out += buf;
      const m = out.match(/listening on http:\/\/([^/\s]+)\//);
      if (m) {
        clearTimeout(timer);
        const host = m[1];
        resolve({
          url: `http://${host}/`,
          host,
          port: Number(host.split(':').pop()),
          pid: child.pid,
          signal: (sig) => { if (running()) child.kill(sig); },
          stop: stopWith('SIGTERM'),
          kill: stopWith('SIGKILL'),
          output: () => out,
        });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (b) => { out += b; });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (${code ?? sig}):\n${out}`));
    });
  });
}

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Poll `fn` until it returns a truthy value; return it, or throw after `timeout`. */
export async function until(fn, { timeout = 10_000, interval = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Open our client and wait until it is connected with an id. */
export async function openClient(context, baseUrl, room) {
  const page = await context.newPage();
  page.on('pageerror', (err) => { page.__errors = [...(page.__errors || []), err]; });
  await page.goto(room ? `${baseUrl}?room=${room}` : baseUrl);
  await page.waitForFunction(() => window.playfield?.status === 'connected' && window.playfield.id !== null, null, { timeout: 15_000 });
  return page;
}

/** The player `id` as seen by `page` (serverPlayers: the newest snapshot). */
export async function serverPos(page, id) {
  return page.evaluate((pid) => window.playfield.serverPlayers().find((p) => p.id === pid) ?? null, id);
}

export async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/**
 * Serve a page's routed WebSocket (from `page.routeWebSocket`) from a real
 * upstream connection opened in node, piping frames and closes both ways,
 * optionally delaying every frame by `delayMs` in each direction (a laggy
 * link). Returns the upstream socket.
 * @param {import('playwright-core').WebSocketRoute} route
 * @param {string} url  upstream URL
 * @param {{delayMs?: number, protocols?: string[]}} opts
 */
export function pipeWebSocket(route, url, { delayMs = 0, protocols = [] } = {}) {
  const upstream = new WebSocket(url, protocols);
  const later = (fn) => (delayMs > 0 ? setTimeout(fn, delayMs) : fn());
  const queue = [];
  route.onMessage((msg) => later(() => {
    if (upstream.readyState === WebSocket.OPEN) upstream.send(msg);
    else if (upstream.readyState === WebSocket.CONNECTING) queue.push(msg);
  }));
  route.onClose((code) => {
    upstream.close(code === 1000 || (code >= 3000 && code < 5000) ? code : 1000);
  });
  upstream.on('open', () => { for (const m of queue.splice(0)) upstream.send(m); });
  upstream.on('message', (data, isBinary) => later(() => route.send(isBinary ? data : data.toString())));
  upstream.on('close', (code, reason) => later(() => {
    // 1005/1006 cannot be sent by an endpoint; report a normal close instead.
    const c = code === 1005 || code === 1006 ? 1000 : code;
    route.close({ code: c, reason: reason.toString() }).catch(() => {});
  }));
  upstream.on('error', () => {});
  return upstream;
}

/**
 * A TCP proxy on an ephemeral loopback port in front of `target`
 * (`host:port`), to break links the way a network does while the browser
 * uses its real WebSocket. Load the page from `url` and its socket goes
 * through the proxy too.
 * - `drop()`: resets every connection open now (TCP RST both ways, no close
 *   frame: the page sees 1006, the server a reset). New ones pass again.
 * - `blackhole()`: on the connections open now, nothing more from the
 *   server reaches the client (a half-open link: no event, the page's
 *   watchdog must notice); the client's bytes still reach the server.
 * - `connections`: how many connections were ever accepted.
 * @param {string} target
 * @returns {Promise<{url: string, host: string, port: number, drop: () => void, blackhole: () => void, connections: number, close: () => Promise<void>}>}
 */
export function startTcpProxy(target) {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const pairs = new Set();
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted += 1;
    const upstream = net.connect(port, host);
    const pair = { client, upstream, silent: false };
    pairs.add(pair);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => { if (!pair.silent) client.write(d); });
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('close', end);
      s.on('error', () => {});
    }
  });
  const reset = () => {
    for (const { client, upstream } of pairs) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    pairs.clear();
  };
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = `127.0.0.1:${server.address().port}`;
      resolve({
        url: `http://${addr}/`,
        host: addr,
        port: server.address().port,
        drop: reset,
        blackhole: () => { for (const pair of pairs) pair.silent = true; },
        get connections() { return accepted; },
        close: () => new Promise((done) => { reset(); server.close(() => done()); }),
      });
    });
  });
}
