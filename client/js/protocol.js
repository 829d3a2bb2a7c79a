/**
 * Playfield native protocol v1: URL building, subprotocol choice, JSON
 * message encoding and defensive decoding of text frames (`welcome`, `pong`,
 * `error` in both encodings, `snapshot` in `playfield.v1.json`). Binary
 * frames of `playfield.v1.bin` are bin.js's. Pure module: no DOM,
 * importable from node. See docs/PROTOCOL.md for the wire format.
 */
import { isValidToken } from './resume.js';

export const SUBPROTOCOL = 'playfield.v1.json';
export const SUBPROTOCOL_JSON = SUBPROTOCOL;
export const SUBPROTOCOL_BIN = 'playfield.v1.bin';
export const PROTOCOL_VERSION = 1;

/**
 * Subprotocols to offer, best first; the server picks the first it speaks.
 * Binary by default (a moving player costs 2-3 bytes per snapshot instead
 * of ~50), JSON as the fallback for a server without it. `?proto=json` (or
 * `bin`) in the page's address offers only that one, for debugging: JSON
 * frames are readable in the browser's network panel.
 * @param {string} search  usually `location.search`
 */
export function offeredProtocols(search) {
  const want = new URLSearchParams(search).get('proto');
  if (want === 'json') return [SUBPROTOCOL_JSON];
  if (want === 'bin') return [SUBPROTOCOL_BIN];
  return [SUBPROTOCOL_BIN, SUBPROTOCOL_JSON];
}

/** Room names the server accepts: 1-32 of A-Z a-z 0-9 _ - */
const ROOM_RE = /^[A-Za-z0-9_-]{1,32}$/;

export function isValidRoom(name) {
  return typeof name === 'string' && ROOM_RE.test(name);
}

/**
 * WebSocket URL on the page's own origin, so the page works behind any host,
 * port or TLS terminator without configuration.
 * @param {{protocol: string, host: string}} loc  usually `window.location`
 * @param {string|null} room  omitted when empty: the server picks its default
 * @param {string|null} [resume]  a resume token from the last `welcome`, to
 *   get the same player back; omitted when empty
 */
export function socketUrl(loc, room, resume = null) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  const params = [];
  if (room) params.push(`room=${encodeURIComponent(room)}`);
  if (resume) params.push(`resume=${encodeURIComponent(resume)}`);
  const query = params.length ? `?${params.join('&')}` : '';
  return `${scheme}//${loc.host}/ws${query}`;
}

export function encodeInput(seq, dir) {
  return JSON.stringify({ type: 'input', seq, input: { x: dir.x, y: dir.y } });
}

export function encodePing(id) {
  return JSON.stringify({ type: 'ping', id });
}

export class ProtocolError extends Error {}

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

function need(cond, what) {
  if (!cond) throw new ProtocolError(`invalid ${what}`);
}

function decodePlayer(p) {
  need(p && typeof p === 'object', 'player (not an object)');
  need(isNum(p.x) && isNum(p.y), 'player position');
  need(typeof p.id === 'number' || typeof p.id === 'string', 'player id');
  return { id: p.id, x: p.x, y: p.y, color: typeof p.color === 'string' ? p.color : '#888' };
}

/** Field kinds a schema may name, as `welcome.schema` spells them. */
export const FIELD_KINDS = Object.freeze(['bool', 'int', 'float', 'str']);

/**
 * `welcome.schema`: what each replicated entity carries besides id and
 * position. The binary encoding cannot be decoded without it (field values
 * carry no type or length of their own); JSON snapshots name their list
 * after `collection`. Null when the server sent none.
 */
function decodeSchema(s) {
  if (s === undefined || s === null) return null;
  need(typeof s === 'object' && Array.isArray(s.fields), 'welcome.schema');
  need(s.fields.length <= 63, 'welcome.schema (more than 63 fields)');
  const fields = s.fields.map((f, i) => {
    need(f && typeof f.name === 'string' && FIELD_KINDS.includes(f.kind), `welcome.schema.fields[${i}]`);
    return { name: f.name, kind: f.kind };
  });
  return { collection: typeof s.collection === 'string' ? s.collection : 'players', fields };
}

function decodeWorld(w) {
  need(w && typeof w === 'object', 'welcome.world');
  for (const k of ['width', 'height', 'speed', 'min', 'max']) need(isNum(w[k]), `welcome.world.${k}`);
  return {
    width: w.width,
    height: w.height,
    speed: w.speed,
    min: w.min,
    max: w.max,
    radius: isNum(w.radius) ? w.radius : 10,
  };
}

/**
 * A `welcome` this client can play with: our protocol version and everything
 * prediction needs. Throws ProtocolError saying what is wrong otherwise (the
 * page then reports an incompatible server instead of waiting for ever).
 */
function decodeWelcome(m) {
  need(m.protocol === PROTOCOL_VERSION,
    `protocol version ${JSON.stringify(m.protocol ?? null)} (this page speaks ${PROTOCOL_VERSION})`);
  need(typeof m.id === 'number' || typeof m.id === 'string', 'welcome.id');
  need(isNum(m.tick_rate) && m.tick_rate > 0, 'welcome.tick_rate');
  // A large world is seen through a window of view_size px around our dot.
  const hasView = m.view_size !== undefined && m.view_size !== null;
  need(!hasView || (isNum(m.view_size) && m.view_size > 0), 'welcome.view_size');
  return {
    type: 'welcome',
    id: m.id,
    room: typeof m.room === 'string' ? m.room : '',
    tickRate: m.tick_rate,
    world: decodeWorld(m.world),
    schema: decodeSchema(m.schema),
    viewSize: hasView ? m.view_size : null,
    // Resuming: the token for next time (null when the server does not
    // resume, or sent something that is not a token), whether this
    // connection got our old player back, and then the highest input seq
    // the server accepted from it.
    resumeToken: isValidToken(m.resume_token) ? m.resume_token : null,
    resumed: m.resumed === true,
    lastSeq: m.resumed === true && Number.isSafeInteger(m.last_seq) && m.last_seq >= 0 ? m.last_seq : 0,
  };
}

/**
 * Parse one text frame from the server into a normalised message, keeping
 * only the fields this client uses. Unknown message types decode to
 * `{type: 'unknown', raw}` so a newer server can add messages without
 * breaking this client; malformed known messages throw ProtocolError.
 */
export function decodeServerMessage(text, collection = 'players') {
  let m;
  try {
    m = JSON.parse(text);
  } catch {
    throw new ProtocolError('frame (not JSON)');
  }
  need(m && typeof m === 'object' && typeof m.type === 'string', 'message (no type)');
  switch (m.type) {
    case 'welcome':
      return decodeWelcome(m);
    case 'snapshot': {
      // Only `tick` places a snapshot in time; the wall-clock `time` is not used.
      need(isNum(m.tick), 'snapshot.tick');
      const players = m.state?.[collection];
      need(Array.isArray(players), `snapshot.state.${collection}`);
      return {
        type: 'snapshot',
        tick: m.tick,
        ack: isNum(m.ack) ? m.ack : 0,
        players: players.map(decodePlayer),
      };
    }
    case 'pong':
      return { type: 'pong', id: m.id };
    case 'error':
      return { type: 'error', code: String(m.code ?? 'unknown'), message: String(m.message ?? '') };
    default:
      return { type: 'unknown', raw: m };
  }
}
