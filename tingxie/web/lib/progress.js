// Time left from measured throughput: audio seconds decoded per wall second, observed by
// polling. Says "estimating" (undefined) until the decoded audio has grown over a few
// seconds, and never shows more time left than it showed before: windows finish in
// batches, so the raw figure jumps, and a time left that counts up is not believed.
export class Eta {
  constructor(windowS = 90) {
    this.windowS = windowS;
    this.reset();
  }
  reset() {
    this.samples = [];
    this.shown = null;
  }
  // `decoded` and `total` in audio seconds; returns null when nothing is left,
  // undefined while estimating, else seconds left.
  update(decoded, total, now = Date.now() / 1000) {
    if (!(total > 0) || decoded >= total) return (this.shown = null);
    const s = this.samples;
    if (s.length && decoded < s[s.length - 1][1]) this.reset(); // a retry started over
    s.push([now, decoded]);
    while (s.length > 2 && now - s[0][0] > this.windowS) s.shift();
    const [t0, d0] = s[0];
    if (decoded <= d0 || now - t0 < 3) return this.shown ?? undefined;
    const raw = ((total - decoded) * (now - t0)) / (decoded - d0);
    this.shown = this.shown == null ? raw : Math.min(raw, this.shown);
    return this.shown;
  }
}
