/**
 * Client-side prediction and server reconciliation for the local player.
 * Pure module: no DOM, all times are passed in (ms, monotonic).
 */
import { normalize } from './input.js';

/**
 * One tick of movement with exactly the server's rule:
 * pos += normalize_if_longer_than_1(dir) * speed / tick_rate, then each axis
 * is clamped to [min, max].
 */
export function step(pos, dir, world, tickRate) {
  const d = normalize(dir);
  const k = world.speed / tickRate;
  return {
    x: clamp(pos.x + d.x * k, world.min, world.max),
    y: clamp(pos.y + d.y * k, world.min, world.max),
  };
}

function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/**
 * Predicts the local player from the inputs it has sent and corrects itself
 * from the server's snapshots.
 *
 * - `pos` is where the server will put us once it has applied every input we
 *   have sent. Each input moves it one step immediately.
 * - Rendering glides from what is drawn towards `pos` at the world's speed
 *   (one step per tick), so our dot moves continuously at 60 fps (and
 *   visibly on the very next frame) instead of jumping 10 px at 20 Hz. The
 *   glide never goes faster than that speed: if an input timer fires late
 *   and the next one on time, the dot lags by those few ms instead of
 *   rushing to catch up.
 * - On a snapshot we take the server position, drop inputs with seq <= ack and
 *   replay the rest. Any difference to the old prediction is not shown as a
 *   jump: it becomes a visual offset that eases out to zero over `smoothMs`.
 *   Differences larger than `snapDistance` (teleports) are applied at once.
 */
export class Predictor {
  constructor({ world, tickRate, smoothMs = 100, snapDistance = 100, maxPending = 256 }) {
    this.world = world;
    this.tickRate = tickRate;
    this.tickMs = 1000 / tickRate;
    // Glide speed in px/ms; a world without a speed glides a step per tick.
    this.glideSpeed = world.speed > 0 ? world.speed / 1000 : null;
    this.maxPending = maxPending;
    this.smoothMs = smoothMs;
    this.snapDistance = snapDistance;
    /** @type {{seq:number, dir:{x:number,y:number}}[]} inputs not yet acknowledged */
    this.pending = [];
    /** Predicted position, null until the first snapshot tells us where we are. */
    this.pos = null;
    this.from = null; // where the current glide started
    this.stepAt = -Infinity; // when the current glide started
    this.glideMs = 0; // how long the current glide takes
    this.offX = 0; // correction offset at offAt, eases to 0
    this.offY = 0;
    this.offAt = 0;
    this.lastCorrection = 0; // size of the last correction in px (shown in the overlay)
  }

  /** Record an input we just sent and apply it locally at once. */
  apply(seq, dir, now) {
    this.pending.push({ seq, dir: { x: dir.x, y: dir.y } });
    // A server that never acknowledges must not make us grow (and replay)
    // for ever; this many unacknowledged inputs is minutes of lag anyway.
    if (this.pending.length > this.maxPending) this.pending.splice(0, this.pending.length - this.maxPending);
    if (this.pos === null) return;
    this.from = this._base(now);
    this.pos = step(this.pos, dir, this.world, this.tickRate);
    this.stepAt = now;
    const dist = Math.hypot(this.pos.x - this.from.x, this.pos.y - this.from.y);
    this.glideMs = this.glideSpeed ? dist / this.glideSpeed : this.tickMs;
  }

  /**
   * Reconcile with an authoritative position.
   * @param {{x:number,y:number}} serverPos  our position in the snapshot
   * @param {number} ack  seq of our last input the server applied
   */
  reconcile(serverPos, ack, now) {
    let drop = 0;
    while (drop < this.pending.length && this.pending[drop].seq <= ack) drop++;
    if (drop) this.pending.splice(0, drop);

    let p = { x: serverPos.x, y: serverPos.y };
    for (const input of this.pending) p = step(p, input.dir, this.world, this.tickRate);

    if (this.pos === null) {
      this.pos = p;
      this.from = p;
      this.stepAt = -Infinity;
      return;
    }
    const dx = p.x - this.pos.x;
    const dy = p.y - this.pos.y;
    this.lastCorrection = Math.hypot(dx, dy);
    if (dx === 0 && dy === 0) return;
    if (this.lastCorrection > this.snapDistance) {
      this.pos = p;
      this.from = p;
      this.stepAt = -Infinity;
      this.offX = this.offY = 0;
      return;
    }
    // Shift the simulation by the correction but keep what is drawn where it
    // is: the offset absorbs the difference and then decays.
    const [ox, oy] = this._offset(now);
    this.offX = ox - dx;
    this.offY = oy - dy;
    this.offAt = now;
    this.pos = p;
    this.from = { x: this.from.x + dx, y: this.from.y + dy };
  }

  /** Position to draw at time `now`, or null before the first snapshot. */
  render(now) {
    if (this.pos === null) return null;
    const b = this._base(now);
    const [ox, oy] = this._offset(now);
    return { x: b.x + ox, y: b.y + oy };
  }

  _base(now) {
    const dt = now - this.stepAt;
    // Done gliding returns pos itself: from + (pos - from) * 1 can differ from
    // pos in the last bit, and a settled dot must sit exactly on the server value.
    if (dt >= this.glideMs) return this.pos;
    const t = dt / this.glideMs;
    const a = t > 0 ? t : 0;
    return {
      x: this.from.x + (this.pos.x - this.from.x) * a,
      y: this.from.y + (this.pos.y - this.from.y) * a,
    };
  }

  _offset(now) {
    if (this.offX === 0 && this.offY === 0) return [0, 0];
    const u = Math.max(0, (now - this.offAt) / this.smoothMs);
    if (u >= 1) return [0, 0];
    const k = (1 - u) * (1 - u); // ease-out: fast at first, lands softly
    return [this.offX * k, this.offY * k];
  }
}
