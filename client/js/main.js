/**
 * Page wiring: DOM, WebSocket lifecycle, input events, render loop.
 * All game logic lives in the DOM-free modules imported below.
 */
import {
  SUBPROTOCOL_BIN, SUBPROTOCOL_JSON, ProtocolError, offeredProtocols, socketUrl, isValidRoom,
  encodeInput, encodePing, decodeServerMessage,
} from './protocol.js';
import { BinReplica, encodeInputBin, encodePingBin } from './bin.js';
import { HeldInput, InputClock, steeringKey } from './input.js';
import { Predictor } from './prediction.js';
import { Interpolator } from './interpolation.js';
import { Backoff } from './backoff.js';
import { LinkWatchdog, connectTimeoutMs } from './watchdog.js';
import { ResumeTokens, afterClose, closeFor, seqBase } from './resume.js';
import { RateCounter } from './stats.js';
import { Renderer } from './render.js';

const PING_EVERY_MS = 1500;
const STATS_EVERY_MS = 250;
const WATCH_EVERY_MS = 500;
const ERROR_NOTE_MS = 5000;
const STATUS_TEXT = {
  connecting: 'Connecting…',
  connected: 'Connected',
  disconnected: 'Disconnected',
  error: 'Error',
  elsewhere: 'Playing in another tab',
};

/** Overlay names of the subprotocols. */
const PROTO_LABEL = { [SUBPROTOCOL_BIN]: 'bin', [SUBPROTOCOL_JSON]: 'json' };

/** Close codes meaning "the server refused or rejected us" (docs/PROTOCOL.md). */
const REFUSAL_CODES = new Set([1003, 1007, 1008, 1009, 1013]);

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'),
  detail: $('status-detail'),
  playerId: $('player-id'),
  canvas: $('canvas'),
  ping: $('stat-ping'),
  players: $('stat-players'),
  room: $('stat-room'),
  rate: $('stat-rate'),
  tick: $('stat-tick'),
  proto: $('stat-proto'),
  correction: $('stat-correction'),
  roomForm: $('room-form'),
  roomInput: $('room-input'),
  roomHelp: $('room-help'),
  playHere: $('play-here'),
};

const renderer = new Renderer(ui.canvas);
const held = new HeldInput();
// The backoff starts over only once a connection has stayed up 10 s.
const backoff = new Backoff({ base: 500, factor: 2, cap: 10_000, stableMs: 10_000 });

/**
 * The newest resume token per room: kept in sessionStorage (per tab, survives
 * a reload), so a reload within the server's grace period keeps our dot.
 */
const tokens = new ResumeTokens(sessionStorageOrNull());
/**
 * The highest input seq this page sent for its current player: a resumed
 * connection goes on counting above it (and above the server's `last_seq`).
 */
let playerSeq = 0;

function sessionStorageOrNull() {
  try {
    return window.sessionStorage; // throws where storage is disabled
  } catch {
    return null;
  }
}

/** Subprotocols we offer: binary first, unless `?proto=json` (or `bin`) asks for one. */
const OFFERED = offeredProtocols(location.search);

/** `?room=` from the address: the name, and whether the server would accept it. */
const urlRoom = roomFromUrl();
/** Room we want to be in: from `?room=`, or null for the server's default. */
let wantedRoom = urlRoom.valid ? urlRoom.name : null;
let status = 'connecting';
/** Connection attempts since the last welcome: each may wait longer to connect. */
let failedAttempts = 0;
const statusHistory = [];

/**
 * Everything tied to one connection; replaced wholesale on reconnect so no
 * stale prediction or snapshot survives into a new session.
 */
let conn = null;

// ---------------------------------------------------------------- status

function setStatus(next, detail = '') {
  if (next !== status || statusHistory.length === 0) {
    statusHistory.push(next);
    if (statusHistory.length > 50) statusHistory.shift();
  }
  status = next;
  // Only touch the live region when the text changes, so screen readers
  // announce transitions and not every countdown tick.
  if (ui.status.dataset.status !== next) {
    ui.status.dataset.status = next;
    ui.status.textContent = STATUS_TEXT[next];
  }
  if (ui.detail.textContent !== detail) {
    ui.detail.textContent = detail;
    ui.detail.title = detail; // the full text when the line is cut short
  }
}

// ------------------------------------------------------------ connection

function roomFromUrl() {
  const name = new URLSearchParams(location.search).get('room');
  if (!name) return { name: null, valid: true }; // the server's default room
  return { name, valid: isValidRoom(name) };
}

let reconnectTimer = 0;
let countdownTimer = 0;
let errorNoteTimer = 0;

/** Notes beside the status while connecting and once connected (the latter for a few seconds). */
const NO_NOTES = Object.freeze({ connecting: '', connected: '' });
const REFUSED_NOTES = Object.freeze({
  connecting: 'Your previous player is gone: joining as a new player',
  connected: 'Joined as a new player: the previous one could not be resumed',
});

/** Open a socket (with our resume token for this room, if we have one). */
function connect(notes = NO_NOTES) {
  clearTimeout(reconnectTimer);
  clearInterval(countdownTimer);
  ui.playHere.hidden = true;
  if (conn) teardown(conn); // never two sockets (and their timers) at once
  setStatus('connecting', notes.connecting);
  const room = wantedRoom;
  const token = tokens.get(room);
  // A handshake slower than the first window still gets in on a later try.
  const connectTimeout = connectTimeoutMs(failedAttempts);
  failedAttempts += 1;
  let ws;
  try {
    ws = new WebSocket(socketUrl(location, room, token), OFFERED);
    ws.binaryType = 'arraybuffer'; // binary snapshots are decoded from bytes, not Blobs
  } catch (err) {
    scheduleReconnect('error', `Cannot open a connection: ${err.message || err}`);
    return;
  }
  const now = performance.now();
  conn = {
    ws,
    /** The room asked for (null: the server's default): its tokens are kept under it. */
    room,
    /** The resume token this connection offered, or null. */
    sentToken: token,
    /** Shown beside *Connected* for a while (why we are a new player). */
    note: notes.connected,
    opened: false,
    welcome: null,
    /**
     * The subprotocol in use: the handshake's answer, or, where the socket
     * does not say (a proxied or mocked socket reports ""), what the first
     * snapshot frame shows. Until it is known we send JSON, which a
     * `playfield.v1.bin` server accepts too.
     */
    proto: null,
    /** Our copy of the world in `playfield.v1.bin` (created on welcome, from its schema). */
    replica: null,
    predictor: null,
    clock: null,
    interp: null, // created on welcome: its timeline needs the tick rate
    seq: 0,
    serverPlayers: [],
    myColor: '#ffffff',
    lastTick: null,
    arrivals: new RateCounter({ windowMs: 1000 }), // snapshots in the last second
    pings: new Map(),
    pingId: 0,
    rtt: null,
    pingTimer: 0,
    pumpTimer: 0,
    // Dead-link detection: a half-open TCP connection raises no event.
    watchdog: new LinkWatchdog({ now, connectTimeoutMs: connectTimeout }),
    watchTimer: 0,
    serverError: null,
  };
  const c = conn;
  c.watchTimer = setInterval(() => watch(c), WATCH_EVERY_MS);
  ws.onopen = () => {
    if (conn !== c) return;
    c.opened = true;
    if (ws.protocol) c.proto = ws.protocol;
    c.watchdog.opened(performance.now());
  };
  ws.onmessage = (ev) => {
    if (conn !== c) return;
    c.watchdog.heard(performance.now());
    if (typeof ev.data === 'string') onMessage(c, ev.data);
    else onBinary(c, ev.data);
  };
  ws.onclose = (ev) => {
    if (conn === c) onClose(c, ev);
  };
  // An error is always followed by close, which decides what to show.
  ws.onerror = () => {};
}

function onMessage(c, data) {
  let m;
  try {
    m = decodeServerMessage(data, c.welcome?.schema?.collection);
  } catch (err) {
    if (!c.welcome) return incompatible(c, err.message);
    console.warn('playfield: ignoring bad frame:', err.message);
    return;
  }
  // The first message is a welcome of our protocol version (or an error
  // explaining a refusal, before the close). Anything else: we cannot play.
  if (!c.welcome && m.type !== 'welcome' && m.type !== 'error') {
    return incompatible(c, `expected welcome, got ${m.type === 'unknown' ? `"${m.raw.type}"` : m.type}`);
  }
  switch (m.type) {
    case 'welcome': return onWelcome(c, m);
    case 'snapshot':
      if (c.proto === SUBPROTOCOL_BIN) return; // not expected on bin; the binary snapshots are the truth
      c.proto ??= SUBPROTOCOL_JSON;
      return onSnapshot(c, m);
    case 'pong': return onPong(c, m);
    case 'error':
      c.serverError = m;
      console.warn(`playfield: server error ${m.code}: ${m.message}`);
      if (c.welcome) showNote(c, `Server: ${m.message || m.code}`);
      return;
    default:
      return; // newer server, unknown message: ignore
  }
}

/** A note beside *Connected* for a few seconds. */
function showNote(c, note) {
  setStatus('connected', note);
  clearTimeout(errorNoteTimer);
  errorNoteTimer = setTimeout(() => {
    if (conn === c && status === 'connected' && ui.detail.textContent === note) setStatus('connected');
  }, ERROR_NOTE_MS);
}

/**
 * A binary frame: a `playfield.v1.bin` snapshot. It must apply to what the
 * replica holds; one that does not (malformed, or a delta against a tick we
 * do not have) leaves us unable to follow the world until the next full
 * snapshot, which the server only sends to a new connection: reconnect.
 */
function onBinary(c, data) {
  if (!c.welcome) return incompatible(c, 'expected welcome, got a binary frame');
  if (c.proto === SUBPROTOCOL_JSON) return incompatible(c, `binary frame on ${SUBPROTOCOL_JSON}`);
  if (!c.replica) return incompatible(c, `invalid welcome.schema (${SUBPROTOCOL_BIN} needs it)`);
  c.proto = SUBPROTOCOL_BIN;
  let h;
  try {
    h = c.replica.apply(data);
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    console.warn(`playfield: bad binary snapshot (${err.kind}): ${err.message}`);
    teardown(c);
    scheduleReconnect('error', `Bad snapshot from the server: ${err.message}`);
    return;
  }
  // Our own dot comes at its exact position (list() puts it in), so
  // prediction replays from the very value the server holds.
  onSnapshot(c, { type: 'snapshot', tick: h.tick, ack: h.ack, players: c.replica.list(c.welcome.id) });
}

/** The server speaks something we cannot play: give up on this socket and retry later. */
function incompatible(c, why) {
  console.warn(`playfield: incompatible server: ${why}`);
  teardown(c);
  scheduleReconnect('error', `Incompatible server: ${why}`);
}

function onWelcome(c, m) {
  if (c.welcome) return; // once per connection
  if (c.proto === SUBPROTOCOL_BIN && !m.schema) return incompatible(c, `invalid welcome.schema (${SUBPROTOCOL_BIN} needs it)`);
  c.welcome = m;
  c.replica = m.schema ? new BinReplica(m.schema) : null;
  failedAttempts = 0;
  // Each token works once: keep only the newest (none: this server does not resume).
  tokens.set(c.room, m.resumeToken);
  // Same player: count on above what either side has seen. New player: from 0.
  c.seq = seqBase({ resumed: m.resumed, ownSeq: playerSeq, lastSeq: m.lastSeq });
  playerSeq = c.seq;
  const tickMs = 1000 / m.tickRate;
  c.predictor = new Predictor({ world: m.world, tickRate: m.tickRate });
  c.clock = new InputClock(tickMs);
  // Others are drawn two ticks (at least 100 ms) in the past, on the tick timeline.
  c.interp = new Interpolator({ tickMs, delayMs: Math.max(100, 2 * tickMs) });
  c.watchdog.setTickRate(m.tickRate);
  // A world larger than the server's view is seen through a camera on our dot.
  renderer.setWorld(m.world, m.viewSize);
  const { view } = renderer;
  ui.canvas.style.aspectRatio = `${view.width} / ${view.height}`;
  ui.canvas.parentElement.style.maxWidth = `${view.width}px`;
  resize();
  // Not reset(): the backoff starts over only if this connection stays up.
  backoff.connected(performance.now());
  ui.playerId.textContent = String(m.id);
  if (document.activeElement !== ui.roomInput) ui.roomInput.value = m.room;
  setStatus('connected');
  if (m.resumed) showNote(c, 'Back in the game as the same player');
  else if (c.note) showNote(c, c.note);
  sendPing(c);
  c.pingTimer = setInterval(() => sendPing(c), PING_EVERY_MS);
  pump(); // keys may already be held
}

function onSnapshot(c, m) {
  if (!c.welcome) return; // welcome comes first; without it we cannot place a snapshot in time
  const now = performance.now();
  c.interp.push(m, now);
  c.serverPlayers = m.players;
  c.lastTick = m.tick;
  c.arrivals.hit(now);
  const me = m.players.find((p) => p.id === c.welcome.id);
  if (me) {
    c.myColor = me.color;
    c.predictor.reconcile(me, m.ack, now);
  }
}

function sendInput(c, dir, now) {
  if (c.ws.readyState !== WebSocket.OPEN) return;
  c.seq += 1;
  playerSeq = c.seq;
  c.ws.send(c.proto === SUBPROTOCOL_BIN ? encodeInputBin(c.seq, dir) : encodeInput(c.seq, dir));
  c.predictor.apply(c.seq, dir, now);
}

function onPong(c, m) {
  const sent = c.pings.get(m.id);
  if (sent === undefined) return;
  c.pings.delete(m.id);
  c.rtt = performance.now() - sent;
}

function sendPing(c) {
  if (c.ws.readyState !== WebSocket.OPEN) return;
  c.pingId += 1;
  c.pings.set(c.pingId, performance.now());
  if (c.pings.size > 8) c.pings.delete(c.pings.keys().next().value); // lost pongs
  c.ws.send(c.proto === SUBPROTOCOL_BIN ? encodePingBin(c.pingId) : encodePing(c.pingId));
}

/**
 * Watchdog tick: a socket stuck CONNECTING, or open but silent (half-open
 * TCP after a Wi-Fi drop or sleep), is closed and retried with backoff.
 */
function watch(c) {
  if (conn !== c) {
    clearInterval(c.watchTimer); // belt and braces: teardown clears it
    return;
  }
  const dead = c.watchdog.check(performance.now());
  if (!dead) return;
  teardown(c);
  const s = Math.round(dead.ms / 1000);
  if (dead.reason === 'connect-timeout') {
    scheduleReconnect('error', `No answer from the server in ${s}s`);
  } else {
    scheduleReconnect(c.welcome ? 'disconnected' : 'error', `Nothing heard from the server for ${s}s`);
  }
}

/**
 * Stop everything of connection `c`. `'reconnect'` (the default: we mean to
 * come back) closes with 4000 when we hold a token for its player, so the
 * server keeps it; `'leave'` closes with 1000 and the player goes at once.
 */
function teardown(c, intent = 'reconnect') {
  clearInterval(c.pingTimer);
  clearInterval(c.watchTimer);
  clearTimeout(c.pumpTimer);
  c.ws.onopen = c.ws.onmessage = c.ws.onclose = c.ws.onerror = null;
  if (c.ws.readyState <= WebSocket.OPEN) {
    const { code, reason } = closeFor(intent, Boolean(c.welcome?.resumeToken));
    c.ws.close(code, reason);
  }
  if (conn === c) conn = null;
  ui.playerId.textContent = '—';
}

function onClose(c, ev) {
  teardown(c);
  const action = afterClose({ code: ev.code, errorCode: c.serverError?.code, sentToken: Boolean(c.sentToken) });
  if (action === 'stop') return playingElsewhere(c);
  if (action === 'fresh') {
    // The server no longer has our player (restarted, grace period over,
    // token used): not an error, just join again as a new player, now.
    tokens.forget(c.room);
    connect(REFUSED_NOTES);
    return;
  }
  let why = ev.reason || '';
  if (c.serverError && !why) why = c.serverError.message || c.serverError.code;
  // Error: we never got in (unreachable, room full, refused) or the server
  // closed us for a protocol fault. Disconnected: an established link went
  // away (server restart, network). Both retry.
  const refused = !c.welcome || REFUSAL_CODES.has(ev.code);
  if (!c.opened) why ||= 'Cannot reach the server';
  scheduleReconnect(refused ? 'error' : 'disconnected', why);
}

/** Wait with backoff, showing a live countdown, then connect again. */
function scheduleReconnect(state, why) {
  const delay = backoff.next(performance.now());
  const at = performance.now() + delay;
  const show = () => {
    const s = Math.max(1, Math.ceil((at - performance.now()) / 1000));
    // Countdown first: it stays visible when a long reason is cut short.
    setStatus(state, `Reconnecting in ${s}s…${why ? ` · ${why}` : ''}`);
  };
  show();
  clearInterval(countdownTimer);
  countdownTimer = setInterval(show, 200);
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(connect, delay);
}

/**
 * Our player was resumed on another connection (close 4002): another tab,
 * or another device with our token. Do not reconnect by ourselves: with a
 * token we would take the player back and the other side would take it back
 * again. The token we hold was spent by that connection, so "Play here"
 * joins as a new player; the other connection keeps playing.
 */
function playingElsewhere(c) {
  tokens.forget(c.room);
  clearTimeout(reconnectTimer);
  clearInterval(countdownTimer);
  setStatus('elsewhere', 'This player was resumed on another connection (another tab, window or device)');
  ui.playHere.hidden = false;
}

/** Switch rooms: update the address bar (no reload) and reconnect at once. */
function joinRoom(name) {
  // Leaving: close with 1000 so the old player goes at once, and never offer
  // its token (dead now) in the new room.
  if (conn) teardown(conn, 'leave');
  tokens.forget(wantedRoom);
  wantedRoom = name;
  const url = new URL(location.href);
  url.searchParams.set('room', name);
  history.replaceState(null, '', url);
  backoff.reset();
  connect();
}

// ----------------------------------------------------------------- input

/**
 * Send an input if one is due, then re-arm the timer. Called on every input
 * change and by its own timer while moving; InputClock keeps it at one
 * message per server tick.
 */
function pump() {
  const c = conn;
  if (!c || !c.clock) return;
  clearTimeout(c.pumpTimer);
  c.pumpTimer = 0;
  const now = performance.now();
  let dir = held.direction();
  let r = c.clock.poll(now, dir.x !== 0 || dir.y !== 0);
  if (r === 'send') {
    sendInput(c, dir, now);
    if (held.taps.length) held.consumeTap(); // a one-step press is done once sent
    dir = held.direction();
    r = c.clock.poll(now, dir.x !== 0 || dir.y !== 0);
  }
  if (typeof r === 'number') c.pumpTimer = setTimeout(pump, r);
}

function isTyping(target) {
  return target instanceof HTMLElement
    && (target.isContentEditable || target.tagName === 'INPUT' || target.tagName === 'TEXTAREA');
}

window.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || isTyping(e.target)) return;
  const code = steeringKey(e);
  if (!code) return;
  e.preventDefault(); // arrows must not scroll the page
  // Any keydown of a key not held presses it, auto-repeats included: a key
  // still held when the window gets focus back only sends repeats.
  if (!held.hasKey(code)) {
    held.pressKey(code);
    pump();
  }
});

window.addEventListener('keyup', (e) => {
  const code = steeringKey(e);
  if (!code) return;
  held.releaseKey(code);
  pump();
});

/** Keys released while the page had no focus never send keyup: let go of all. */
function releaseAll() {
  held.releaseAll();
  for (const b of document.querySelectorAll('.pad button.held')) b.classList.remove('held');
  pump();
}
window.addEventListener('blur', releaseAll);
document.addEventListener('visibilitychange', () => {
  if (document.hidden) releaseAll();
});

/**
 * On-screen pad: pointer events cover mouse, pen and touch alike. Each
 * pointer is its own input source, so two fingers on ↑ and → make a diagonal.
 * Pointer capture keeps the press alive if the finger slides off the button.
 */
for (const btn of document.querySelectorAll('.pad button')) {
  const dir = { x: Number(btn.dataset.dx), y: Number(btn.dataset.dy) };
  const source = (e) => `ptr:${e.pointerId}`;
  btn.addEventListener('pointerdown', (e) => {
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    e.preventDefault();
    btn.setPointerCapture?.(e.pointerId);
    held.press(source(e), dir);
    btn.classList.add('held');
    pump();
  });
  const end = (e) => {
    held.release(source(e));
    btn.classList.remove('held');
    pump();
  };
  btn.addEventListener('pointerup', end);
  btn.addEventListener('pointercancel', end);
  btn.addEventListener('lostpointercapture', end);
  btn.addEventListener('contextmenu', (e) => e.preventDefault());
  // Keyboard activation (Enter/Space on a focused button): exactly one step,
  // carried by the next input sent.
  btn.addEventListener('click', (e) => {
    if (e.detail !== 0 || !conn?.clock) return; // not queued for a later connection
    held.tap(dir);
    pump();
  });
}

ui.roomForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = ui.roomInput.value.trim();
  const ok = isValidRoom(name);
  ui.roomInput.setAttribute('aria-invalid', String(!ok));
  ui.roomHelp.classList.toggle('bad', !ok);
  if (ok) {
    ui.roomInput.blur();
    joinRoom(name);
  }
});
ui.roomInput.value = urlRoom.name ?? '';

ui.playHere.addEventListener('click', () => {
  backoff.reset();
  failedAttempts = 0;
  connect();
});

/** A `?room=` the server would refuse: say so and wait for a valid name, rather than join another room. */
function badUrlRoom() {
  ui.roomInput.setAttribute('aria-invalid', 'true');
  ui.roomHelp.classList.add('bad');
  setStatus('error', `“${urlRoom.name}” in the address is not a valid room name: pick a room below`);
}

// ---------------------------------------------------------------- render

function resize() {
  renderer.resize(ui.canvas.clientWidth || 500, window.devicePixelRatio || 1);
}
new ResizeObserver(resize).observe(ui.canvas);
window.addEventListener('resize', resize);

const NO_PLAYERS = [];

/** Others as interpolated now, and my predicted position. */
function currentView(now) {
  const c = conn;
  if (!c || !c.welcome) return { others: NO_PLAYERS, me: null, myId: null };
  const myId = c.welcome.id;
  const others = c.interp.sample(now);
  const pos = c.predictor.render(now);
  return { others, me: pos && { x: pos.x, y: pos.y, color: c.myColor }, myId };
}

function frame() {
  const { others, me, myId } = currentView(performance.now());
  renderer.draw(others, me, myId);
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);

/** Overlay numbers, a few times a second rather than every frame. */
setInterval(() => {
  const c = conn;
  const live = c && c.welcome;
  const now = performance.now();
  ui.ping.textContent = live && c.rtt !== null ? `${Math.round(c.rtt)} ms` : '–';
  ui.players.textContent = live ? String(c.serverPlayers.length) : '–';
  ui.room.textContent = live ? c.welcome.room : (wantedRoom ?? '–');
  ui.rate.textContent = live ? String(c.arrivals.count(now)) : '–';
  ui.tick.textContent = live && c.lastTick !== null ? String(c.lastTick) : '–';
  ui.proto.textContent = live && c.proto ? (PROTO_LABEL[c.proto] ?? c.proto) : '–';
  ui.correction.textContent = live ? `${c.predictor.lastCorrection.toFixed(1)} px` : '–';
}, STATS_EVERY_MS);

// ------------------------------------------------------------- test hook

/** Read-only view for end-to-end tests and curious developers. */
window.playfield = {
  get id() { return conn?.welcome?.id ?? null; },
  get status() { return status; },
  get room() { return conn?.welcome?.room ?? wantedRoom; },
  /** Whether the current connection got our previous player back (`welcome.resumed`). */
  get resumed() { return conn?.welcome?.resumed ?? false; },
  /** The subprotocol in use (`playfield.v1.bin` or `playfield.v1.json`), null before it is known. */
  get protocol() { return conn?.proto ?? null; },
  /** What this page offered, best first. */
  get offered() { return OFFERED.slice(); },
  get statusHistory() { return statusHistory.slice(); },
  players() {
    const { others, me, myId } = currentView(performance.now());
    const list = [];
    for (const p of others) if (p.id !== myId) list.push({ id: p.id, x: p.x, y: p.y });
    if (me) list.push({ id: myId, x: me.x, y: me.y });
    return list;
  },
  serverPlayers() {
    return (conn?.serverPlayers ?? []).map((p) => ({ id: p.id, x: p.x, y: p.y, color: p.color }));
  },
  me() {
    const { me } = currentView(performance.now());
    return me && { x: me.x, y: me.y };
  },
  /** The part of the world on the board as of the last frame: top-left corner and size, in world px. */
  camera() {
    const { camera, view, world } = renderer;
    return { x: camera.x, y: camera.y, width: view.width, height: view.height, worldWidth: world.width, worldHeight: world.height };
  },
};

if (urlRoom.valid) connect();
else badUrlRoom();
