/**
 * Overlay statistics. Pure module: no DOM, times are passed in (ms, monotonic).
 */

/**
 * Events in the last `windowMs` (snapshots per second). Old entries are
 * dropped on every `hit`, not only when someone reads the count, so a
 * hidden tab whose timers are throttled to once a minute does not pile up
 * arrival times; `max` bounds it whatever the rate.
 */
export class RateCounter {
  constructor({ windowMs = 1000, max = 512 } = {}) {
    this.windowMs = windowMs;
    this.max = max;
    this.times = [];
    this.head = 0; // index of the oldest live entry; compacted now and then
  }

  hit(now) {
    this.times.push(now);
    this._prune(now);
  }

  count(now) {
    this._prune(now);
    return this.times.length - this.head;
  }

  _prune(now) {
    const { times } = this;
    while (this.head < times.length && (times[this.head] <= now - this.windowMs || times.length - this.head > this.max)) this.head++;
    // Compact in one go rather than shift() per entry.
    if (this.head > 64 && this.head * 2 > times.length) {
      times.splice(0, this.head);
      this.head = 0;
    }
  }
}
