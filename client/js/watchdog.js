/**
 * Dead-link detection. A half-open TCP connection (Wi-Fi dropped, laptop
 * slept, a NAT forgot us) raises no event for minutes: the socket stays
 * "open" and the board freezes. The server sends a snapshot every tick while
 * we are connected, so silence is itself the signal.
 *
 * main.js calls `heard()` on every message and `check()` from a timer; when
 * `check()` returns a verdict it closes the socket and reconnects through the
 * normal backoff path. Pure module: no DOM, all times are passed in (ms,
 * monotonic).
 */

/**
 * How long without any message means the link is dead: `ticks` server ticks,
 * but never less than `floorMs` (a few late snapshots are not a dead link).
 * @param {number|null} tickRate  server ticks per second; null before welcome
 */
export function silenceLimitMs(tickRate, { floorMs = 3000, ticks = 10 } = {}) {
  if (!(tickRate > 0)) return floorMs;
  return Math.max(floorMs, (ticks * 1000) / tickRate);
}

/**
 * How long a socket may stay CONNECTING on attempt `attempt` (0 = first try
 * since the last welcome): `baseMs` doubled per failed attempt, at most
 * `capMs`. A link whose handshake takes longer than the base (slow mobile,
 * satellite) still gets in on a later attempt instead of being cut off at
 * the same point for ever.
 */
export function connectTimeoutMs(attempt, { baseMs = 5000, capMs = 30_000 } = {}) {
  const n = Math.max(0, Math.floor(attempt) || 0);
  return Math.min(capMs, baseMs * 2 ** Math.min(n, 30));
}

export class LinkWatchdog {
  /**
   * @param {object} o
   * @param {number} o.now  when the socket was created
   * @param {number} [o.connectTimeoutMs]  longest time to stay CONNECTING
   *   (main.js passes `connectTimeoutMs(attempt)`)
   * @param {number} [o.floorMs]  shortest silence that counts as dead
   * @param {number} [o.ticks]  silence in server ticks that counts as dead
   * @param {number} [o.suspendGapMs]  checks further apart than this mean
   *   the page itself was not running (laptop asleep, throttled background
   *   tab): silence cannot be told apart from our own suspension, so the
   *   window starts over instead of declaring the link dead.
   */
  constructor({ now, connectTimeoutMs = 5000, floorMs = 3000, ticks = 10, suspendGapMs = 2000 }) {
    this.connectTimeoutMs = connectTimeoutMs;
    this.floorMs = floorMs;
    this.ticks = ticks;
    this.suspendGapMs = suspendGapMs;
    this.open = false;
    this.startedAt = now;
    this.lastHeard = now;
    this.lastCheck = now;
    this.tickRate = null;
  }

  /** The socket opened. */
  opened(now) {
    this.open = true;
    this.lastHeard = now;
  }

  /** Any message arrived. */
  heard(now) {
    this.open = true;
    this.lastHeard = now;
  }

  /** The server told us its tick rate (welcome). */
  setTickRate(tickRate) {
    this.tickRate = tickRate;
  }

  /** Current silence limit in ms. */
  get silenceMs() {
    return silenceLimitMs(this.tickRate, { floorMs: this.floorMs, ticks: this.ticks });
  }

  /**
   * Call periodically (every few hundred ms).
   * @returns {null | {reason: 'connect-timeout' | 'silent', ms: number}}
   *   null while the link looks alive; otherwise why it is considered dead
   *   and for how long (ms) it has been so.
   */
  check(now) {
    const gap = now - this.lastCheck;
    this.lastCheck = now;
    if (gap > this.suspendGapMs) {
      // We were not running: give the link a fresh window.
      this.startedAt = Math.max(this.startedAt, now);
      this.lastHeard = Math.max(this.lastHeard, now);
      return null;
    }
    if (!this.open) {
      const ms = now - this.startedAt;
      return ms >= this.connectTimeoutMs ? { reason: 'connect-timeout', ms } : null;
    }
    const ms = now - this.lastHeard;
    return ms >= this.silenceMs ? { reason: 'silent', ms } : null;
  }
}
