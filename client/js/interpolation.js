/**
 * Entity interpolation for other players: draw them `delayMs` in the past,
 * between the two snapshots that bracket that moment, so 20 Hz snapshots
 * turn into smooth 60 fps motion. Pure module: no DOM.
 *
 * Server time is mapped to the local clock with an offset = arrival - time.
 * The offset follows the fastest recent arrival (lower values are adopted at
 * once, higher ones only drift in slowly), so a late packet does not push the
 * whole timeline back, while clock drift and lasting latency changes are
 * still followed.
 */
export class Interpolator {
  constructor({ delayMs = 100, maxSnapshots = 32, driftRate = 0.02 } = {}) {
    this.delayMs = delayMs;
    this.maxSnapshots = maxSnapshots;
    this.driftRate = driftRate;
    /** @type {{tick:number, time:number, players:any[], byId:Map<any,any>}[]} oldest first */
    this.snapshots = [];
    this.offset = null; // local ms - server ms
    /** Reused output array and objects: sampling allocates nothing per frame. */
    this.out = [];
    this.pool = [];
  }

  clear() {
    this.snapshots.length = 0;
    this.offset = null;
  }

  /**
   * Add a snapshot received at local time `arrival`. Duplicates and
   * out-of-order snapshots are ignored.
   * @param {{tick:number, time:number, players:{id:any,x:number,y:number,color?:string}[]}} snap
   */
  push(snap, arrival) {
    const last = this.snapshots[this.snapshots.length - 1];
    if (last && snap.tick <= last.tick) return;
    const byId = new Map();
    for (const p of snap.players) byId.set(p.id, p);
    this.snapshots.push({ tick: snap.tick, time: snap.time, players: snap.players, byId });
    if (this.snapshots.length > this.maxSnapshots) this.snapshots.shift();

    const sample = arrival - snap.time;
    if (this.offset === null || sample < this.offset) this.offset = sample;
    else this.offset += (sample - this.offset) * this.driftRate;
  }

  /** Server time that is drawn at local time `now`. */
  renderTime(now) {
    return this.offset === null ? -Infinity : now - this.offset - this.delayMs;
  }

  /**
   * Interpolated players at local time `now`. Fills and returns a reused
   * array of `{id, x, y, color}`; its contents are valid until the next call.
   *
   * Membership follows the older snapshot of the bracketing pair: a player
   * appears when render time reaches the first snapshot that has them, and
   * vanishes when it reaches the first one without them. Before the first
   * snapshot the oldest is shown, after the newest the newest is held (no
   * extrapolation: a stalled link freezes others rather than guessing).
   */
  sample(now) {
    const out = this.out;
    const snaps = this.snapshots;
    if (snaps.length === 0) {
      out.length = 0;
      return out;
    }
    const t = this.renderTime(now);
    let i = snaps.length - 1;
    while (i > 0 && snaps[i].time > t) i--;
    const a = snaps[i];
    const b = i + 1 < snaps.length ? snaps[i + 1] : null;
    const alpha = b && t > a.time ? Math.min(1, (t - a.time) / (b.time - a.time)) : 0;

    let n = 0;
    for (const p of a.players) {
      let x = p.x;
      let y = p.y;
      const q = b && alpha > 0 ? b.byId.get(p.id) : undefined;
      if (q) {
        x += (q.x - x) * alpha;
        y += (q.y - y) * alpha;
      }
      let o = this.pool[n];
      if (!o) o = this.pool[n] = { id: null, x: 0, y: 0, color: '' };
      out[n] = o;
      o.id = p.id;
      o.x = x;
      o.y = y;
      o.color = p.color;
      n++;
    }
    out.length = n;
    return out;
  }

  /** The newest snapshot's players (the server's latest word). */
  latest() {
    const s = this.snapshots[this.snapshots.length - 1];
    return s ? s.players : [];
  }
}
