// AudioWorklet: microphone float samples at the context rate -> 16 kHz mono PCM16 frames
// (~100 ms each) posted to the main thread with an RMS level for the meter.
// Resampling: a windowed-sinc FIR low-pass, then linear interpolation.

class Pcm16Resampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.target = o.targetRate || 16000;
    this.ratio = sampleRate / this.target; // input samples per output sample
    this.frame = Math.round((this.target * (o.frameMs || 100)) / 1000);
    this.out = new Int16Array(this.frame);
    this.n = 0;
    this.pos = 0; // fractional read position into the current input block
    this.prev = 0; // last sample of the previous block, for interpolation across blocks
    this.sumSq = 0;
    // windowed-sinc low-pass at 0.45 × target rate, applied at the input rate before
    // interpolation, so content above 8 kHz does not alias into the speech band
    const cutoff = Math.min(0.5, (0.45 * this.target) / sampleRate);
    const n = this.ratio > 1 ? 2 * Math.ceil(8 * this.ratio) + 1 : 1;
    this.fir = new Float32Array(n);
    let sum = 0;
    for (let k = 0; k < n; k++) {
      const m = k - (n - 1) / 2;
      const sinc = m === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * m) / (Math.PI * m);
      const w = n === 1 ? 1 : 0.42 - 0.5 * Math.cos((2 * Math.PI * k) / (n - 1)) + 0.08 * Math.cos((4 * Math.PI * k) / (n - 1));
      this.fir[k] = sinc * w;
      sum += this.fir[k];
    }
    for (let k = 0; k < n; k++) this.fir[k] /= sum;
    this.hist = new Float32Array(n); // ring buffer of the last n input samples
    this.hi = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || !input.length) return true;
    const chans = input.length;
    const len = input[0].length;
    // mix to mono and low-pass with a moving average of `taps` samples
    const mono = new Float32Array(len);
    for (let i = 0; i < len; i++) {
      let v = 0;
      for (let c = 0; c < chans; c++) v += input[c][i];
      v /= chans;
      const n = this.fir.length;
      if (n > 1) {
        this.hist[this.hi] = v;
        this.hi = (this.hi + 1) % n;
        let acc = 0;
        for (let k = 0, j = this.hi; k < n; k++, j = (j + 1) % n) acc += this.fir[k] * this.hist[j];
        v = acc;
      }
      mono[i] = v;
    }
    // linear interpolation; position -1 refers to `prev`
    while (this.pos < len) {
      const i = Math.floor(this.pos);
      const f = this.pos - i;
      const a = i - 1 < 0 ? this.prev : mono[i - 1];
      const b = mono[i];
      const s = Math.max(-1, Math.min(1, a + (b - a) * f));
      this.sumSq += s * s;
      this.out[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.n === this.frame) {
        const pcm = this.out.buffer.slice(0);
        this.port.postMessage({ pcm, level: Math.sqrt(this.sumSq / this.frame) }, [pcm]);
        this.n = 0;
        this.sumSq = 0;
      }
      this.pos += this.ratio;
    }
    this.pos -= len;
    this.prev = mono[len - 1];
    return true;
  }
}

registerProcessor("pcm16-resampler", Pcm16Resampler);
