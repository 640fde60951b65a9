// Time left from measured throughput: audio seconds decoded per wall second, observed by
// polling. Says "estimating" (undefined) until the decoded audio has grown over a few
// seconds, and never shows more time left than it showed before: windows finish in
// batches, so the raw figure jumps, and a time left that counts up is not believed.
// Between measurements it counts down with the clock: a long file's windows finish tens of
// seconds apart, and a time left that stands still while the wall clock runs reads as stuck.
// Only a count-down that ran out while work is left gives way to a longer measurement.
export class Eta {
  constructor(windowS = 90) {
    this.windowS = windowS;
    this.reset();
  }
  reset() {
    this.samples = [];
    this.shown = null;
    this.shownAt = null;
  }
  // the last estimate, less the time since it was made (never under a second: work is left)
  countdown(now) {
    return this.shown == null ? undefined : Math.max(1, this.shown - (now - this.shownAt));
  }
  // `decoded` and `total` in audio seconds; returns null when nothing is left,
  // undefined while estimating, else seconds left.
  update(decoded, total, now = Date.now() / 1000) {
    if (!(total > 0) || decoded >= total) return (this.shown = null);
    if (this.samples.length && decoded < this.samples[this.samples.length - 1][1]) this.reset(); // a retry started over
    const s = this.samples; // read after a reset, which replaces the array
    const advanced = !s.length || decoded > s[s.length - 1][1];
    s.push([now, decoded]);
    while (s.length > 2 && now - s[0][0] > this.windowS) s.shift();
    const [t0, d0] = s[0];
    // a new measurement only when more audio was decoded: between, the clock counts down
    if (!advanced || decoded <= d0 || now - t0 < 3) return this.countdown(now);
    const raw = ((total - decoded) * (now - t0)) / (decoded - d0);
    // a count-down that ran out while work is left was wrong: the new measurement replaces it
    const current = this.countdown(now);
    this.shown = current === undefined || current <= 1 ? raw : Math.min(raw, current);
    this.shownAt = now;
    return this.shown;
  }
}
