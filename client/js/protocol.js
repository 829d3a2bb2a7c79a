/**
 * Playfield native protocol v1 (`playfield.v1.json`): URL building, message
 * encoding and defensive decoding. Pure module: no DOM, importable from node.
 * See docs/PROTOCOL.md for the wire format.
 */

export const SUBPROTOCOL = 'playfield.v1.json';
export const PROTOCOL_VERSION = 1;

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
 */
export function socketUrl(loc, room) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = room ? `?room=${encodeURIComponent(room)}` : '';
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
  return {
    type: 'welcome',
    id: m.id,
    room: typeof m.room === 'string' ? m.room : '',
    tickRate: m.tick_rate,
    world: decodeWorld(m.world),
  };
}

/**
 * Parse one text frame from the server into a normalised message, keeping
 * only the fields this client uses. Unknown message types decode to
 * `{type: 'unknown', raw}` so a newer server can add messages without
 * breaking this client; malformed known messages throw ProtocolError.
 */
export function decodeServerMessage(text) {
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
      const players = m.state?.players;
      need(Array.isArray(players), 'snapshot.state.players');
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
