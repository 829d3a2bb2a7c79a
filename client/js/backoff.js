/**
 * Reconnection delays: exponential backoff with "equal jitter".
 *
 * Attempt n waits between ceil/2 and ceil, where ceil = min(cap, base * factor^n).
 * Half the delay is guaranteed, so a countdown is never ~0 s, and the random
 * half spreads clients out so a restarted server is not hit by all of them in
 * the same instant.
 *
 * The backoff starts over only after a connection has stayed up for
 * `stableMs`, not as soon as one is accepted: a server that accepts and then
 * closes at once (a crash loop, a fault, a misconfigured timeout) would
 * otherwise be hit several times a second, for ever, by every open tab.
 * Pure module: no DOM, all times are passed in (ms, monotonic).
 */
export class Backoff {
  constructor({ base = 500, factor = 2, cap = 10_000, stableMs = 10_000, random = Math.random } = {}) {
    this.base = base;
    this.factor = factor;
    this.cap = cap;
    this.stableMs = stableMs;
    this.random = random;
    this.attempt = 0;
    /** When the current connection was established, or null. */
    this.upSince = null;
  }

  /** Upper bound of the delay for a given attempt number (0-based). */
  ceiling(attempt = this.attempt) {
    return Math.min(this.cap, this.base * this.factor ** attempt);
  }

  /**
   * A connection is established (welcome received) at `now`. It counts as a
   * success, and resets the backoff, only if it is still up `stableMs` later.
   */
  connected(now) {
    this.upSince = now;
  }

  /** Whether the connection established at `upSince` has been up long enough. */
  isStable(now) {
    return this.upSince !== null && now - this.upSince >= this.stableMs;
  }

  /**
   * Delay in ms before the next attempt; advances the attempt counter.
   * @param {number} [now]  when the connection was lost; if it had stayed up
   *   for `stableMs`, the backoff starts over from the base.
   */
  next(now) {
    if (now !== undefined && this.isStable(now)) this.attempt = 0;
    this.upSince = null;
    const ceil = this.ceiling();
    // Stop counting once the cap is reached: the number stays small.
    if (ceil < this.cap) this.attempt += 1;
    const half = ceil / 2;
    return Math.round(half + this.random() * half);
  }

  /** Start over at once (the user asked for a new connection). */
  reset() {
    this.attempt = 0;
    this.upSince = null;
  }
}
