/**
 * Reconnection delays: exponential backoff with "equal jitter".
 *
 * Attempt n waits between ceil/2 and ceil, where ceil = min(cap, base * factor^n).
 * Half the delay is guaranteed, so a countdown is never ~0 s, and the random
 * half spreads clients out so a restarted server is not hit by all of them in
 * the same instant. Pure module: no DOM.
 */
export class Backoff {
  constructor({ base = 500, factor = 2, cap = 10_000, random = Math.random } = {}) {
    this.base = base;
    this.factor = factor;
    this.cap = cap;
    this.random = random;
    this.attempt = 0;
  }

  /** Upper bound of the delay for a given attempt number (0-based). */
  ceiling(attempt = this.attempt) {
    return Math.min(this.cap, this.base * this.factor ** attempt);
  }

  /** Delay in ms before the next attempt; advances the attempt counter. */
  next() {
    const ceil = this.ceiling();
    this.attempt += 1;
    const half = ceil / 2;
    return Math.round(half + this.random() * half);
  }

  /** Call once a connection is really established (welcome received). */
  reset() {
    this.attempt = 0;
  }
}
