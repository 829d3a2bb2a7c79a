/**
 * Entity interpolation for other players: draw them `delayMs` in the past,
 * between the two snapshots that bracket that moment, so 20 Hz snapshots
 * turn into smooth 60 fps motion. Pure module: no DOM.
 *
 * The timeline is the server's tick, not its wall clock: snapshot `tick` n
 * happened at `n * tickMs` server milliseconds. The snapshot's `time` field
 * comes from the server's system clock, which can step (NTP, an admin): a
 * timeline built on it would make every other dot freeze or jump for
 * seconds. Ticks only ever advance by one per tick.
 *
 * Server timeline ms are mapped to the local clock with an offset =
 * arrival - tick time. The offset follows the fastest recent arrival (lower
 * values are adopted at once, higher ones only drift in slowly), so a late
 * packet does not push the whole timeline back, while clock drift and slow
 * latency changes are still followed. A sudden lasting rise is a jump: after
 * a server stall longer than 20 ticks the server skips ahead, so its tick
 * timeline falls behind real time at once. When even the fastest arrival of
 * the last `windowMs` is more than half the delay above the offset, the
 * offset jumps to it (drifting would leave render time past the newest
 * snapshot, others stepping at the tick rate, for seconds).
 */
export class Interpolator {
  constructor({ tickMs = 50, delayMs = 100, maxSnapshots = 32, driftRate = 0.02, windowMs = Math.max(1000, 4 * tickMs) } = {}) {
    this.tickMs = tickMs;
    this.delayMs = delayMs;
    this.maxSnapshots = maxSnapshots;
    this.driftRate = driftRate;
    this.windowMs = windowMs;
    /** @type {{tick:number, t:number, players:any[], byId:Map<any,any>}[]} oldest first; t = tick * tickMs */
    this.snapshots = [];
    this.offset = null; // local ms - server timeline ms
    /** @type {{arrival:number, sample:number}[]} offset samples of the last windowMs, oldest first */
    this.recent = [];
    /** Reused output array and objects: sampling allocates nothing per frame. */
    this.out = [];
    this.pool = [];
  }

  /**
   * Add a snapshot received at local time `arrival`. Duplicates and
   * out-of-order snapshots are ignored. Only `tick` places it in time; its
   * wall-clock `time`, if any, is not used.
   * @param {{tick:number, players:{id:any,x:number,y:number,color?:string}[]}} snap
   */
  push(snap, arrival) {
    const last = this.snapshots[this.snapshots.length - 1];
    if (last && snap.tick <= last.tick) return;
    const byId = new Map();
    for (const p of snap.players) byId.set(p.id, p);
    const t = snap.tick * this.tickMs;
    this.snapshots.push({ tick: snap.tick, t, players: snap.players, byId });
    if (this.snapshots.length > this.maxSnapshots) this.snapshots.shift();

    const sample = arrival - t;
    const recent = this.recent;
    recent.push({ arrival, sample });
    while (recent[0].arrival < arrival - this.windowMs || recent.length > 4 * this.maxSnapshots) recent.shift();
    if (this.offset === null || sample < this.offset) {
      this.offset = sample;
      return;
    }
    // Trust the window's minimum only once it covers half the window: the
    // first snapshot after a gap may itself be late.
    if (arrival - recent[0].arrival >= this.windowMs / 2) {
      let min = Infinity;
      for (const r of recent) if (r.sample < min) min = r.sample;
      if (min - this.offset > this.delayMs / 2) {
        this.offset = min;
        return;
      }
    }
    this.offset += (sample - this.offset) * this.driftRate;
  }

  /** Server timeline ms (tick * tickMs) that is drawn at local time `now`. */
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
    while (i > 0 && snaps[i].t > t) i--;
    const a = snaps[i];
    const b = i + 1 < snaps.length ? snaps[i + 1] : null;
    const alpha = b && t > a.t ? Math.min(1, (t - a.t) / (b.t - a.t)) : 0;

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
}
