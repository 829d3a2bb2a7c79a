/**
 * Input: which directions are held, and when to send an `input` message.
 * Pure module (no DOM): main.js feeds it key codes and pointer ids.
 */

/**
 * Keys by `KeyboardEvent.code`: the physical key, so W/A/S/D sit in the same
 * place on AZERTY and Caps Lock or Shift cannot change the match (the seed's
 * lower-casing bug). `e.key` is a fallback for synthetic events without a code.
 */
const KEY_DIRS = {
  ArrowUp: [0, -1], KeyW: [0, -1],
  ArrowDown: [0, 1], KeyS: [0, 1],
  ArrowLeft: [-1, 0], KeyA: [-1, 0],
  ArrowRight: [1, 0], KeyD: [1, 0],
};
const KEY_FALLBACK = {
  arrowup: 'ArrowUp', w: 'KeyW',
  arrowdown: 'ArrowDown', s: 'KeyS',
  arrowleft: 'ArrowLeft', a: 'KeyA',
  arrowright: 'ArrowRight', d: 'KeyD',
};

/**
 * The canonical key name (`ArrowUp`, `KeyW`, ...) for a keyboard event, or
 * null when the key does not steer.
 * @param {{code?: string, key?: string}} e
 */
export function steeringKey(e) {
  if (e.code && KEY_DIRS[e.code]) return e.code;
  if (typeof e.key === 'string') return KEY_FALLBACK[e.key.toLowerCase()] ?? null;
  return null;
}

/** The unit vector a steering key pushes towards, or null. */
export function keyDirection(code) {
  const d = KEY_DIRS[code];
  return d ? { x: d[0], y: d[1] } : null;
}

/**
 * Length-limited direction, exactly the server's rule: a vector longer than 1
 * is scaled to length 1 (so diagonals are not faster); shorter ones are kept.
 */
export function normalize(dir) {
  const len = Math.hypot(dir.x, dir.y);
  return len > 1 ? { x: dir.x / len, y: dir.y / len } : { x: dir.x, y: dir.y };
}

/**
 * Held directions from any number of sources (keys, fingers, mouse). Each
 * source pushes one vector; the result is the per-axis sum clamped to
 * [-1, 1]: Up+Right is a diagonal, Up+Down cancel, W+ArrowUp is still just up.
 * The components stay integers so the wire carries `{"x":1,"y":-1}` and the
 * server and client normalise the same numbers.
 */
export class HeldInput {
  constructor({ maxTaps = 8 } = {}) {
    /** @type {Map<string, {x:number,y:number}>} */
    this.sources = new Map();
    /** One-step presses (a keyboard "click" on a pad button), oldest first. */
    this.taps = [];
    this.maxTaps = maxTaps;
  }

  press(source, dir) {
    this.sources.set(source, dir);
  }

  release(source) {
    this.sources.delete(source);
  }

  releaseAll() {
    this.sources.clear();
    this.taps.length = 0;
  }

  /**
   * A one-step press: it joins `direction()` until the input carrying it is
   * sent (`consumeTap()`), so it moves exactly one step however soon the
   * send slot comes. Several taps before a slot make several steps.
   */
  tap(dir) {
    if (this.taps.length < this.maxTaps) this.taps.push({ x: dir.x, y: dir.y });
  }

  /** The input carrying the oldest tap was sent. */
  consumeTap() {
    this.taps.shift();
  }

  /** Whether the steering key `code` is already held. */
  hasKey(code) {
    return this.sources.has(`key:${code}`);
  }

  pressKey(code) {
    const d = keyDirection(code);
    if (d) this.press(`key:${code}`, d);
    return d !== null;
  }

  releaseKey(code) {
    this.release(`key:${code}`);
  }

  /** Raw direction to send, components in {-1, 0, 1}. */
  direction() {
    let x = 0;
    let y = 0;
    for (const d of this.sources.values()) {
      x += d.x;
      y += d.y;
    }
    if (this.taps.length) {
      x += this.taps[0].x;
      y += this.taps[0].y;
    }
    const clamp = (v) => (v > 0 ? 1 : v < 0 ? -1 : 0);
    return { x: clamp(x), y: clamp(y) };
  }
}

/**
 * Decides when to send inputs: at most one per server tick on average, one per
 * tick while a direction is held, plus a single zero input after release.
 * Starting from rest sends at once when a slot is free, so the first step is
 * not delayed by up to a tick. Slots advance by exactly `tickMs` so timer
 * lateness does not slow movement down; after a long stall (background tab)
 * the schedule restarts instead of bursting to catch up.
 */
export class InputClock {
  constructor(tickMs) {
    this.tickMs = tickMs;
    this.nextSlot = -Infinity;
    this.lastSentMoving = false;
  }

  /**
   * @param {number} now  ms, monotonic
   * @param {boolean} moving  whether a non-zero direction is held
   * @returns {'send'|'idle'|number}  'send' now, 'idle' (nothing to do) or
   *   the ms to wait before asking again
   */
  poll(now, moving) {
    if (!moving && !this.lastSentMoving) return 'idle';
    if (now < this.nextSlot) return this.nextSlot - now;
    // Fell behind by more than a tick: resynchronise rather than burst.
    if (now - this.nextSlot > this.tickMs) this.nextSlot = now;
    this.nextSlot += this.tickMs;
    this.lastSentMoving = moving;
    return 'send';
  }
}
