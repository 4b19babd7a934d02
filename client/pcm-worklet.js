// AudioWorklet processor "pcm16k": the microphone as 16 kHz mono int16 chunks.
//
// Runs on the audio rendering thread at the device's rate (`sampleRate`, usually
// 44.1 or 48 kHz): mixes the channels to mono, low-passes below 16 kHz's Nyquist
// (a windowed-sinc FIR) and resamples by linear interpolation, carrying the filter
// history and the fractional position across the 128-sample blocks. Every
// `chunkMs` of output it posts {t, pcm}: `t` the context time (s) of the chunk's
// first sample, `pcm` an ArrayBuffer of int16 little-endian samples (transferred).
// Output starts with the second of two consecutive blocks; when the context rendered
// blocks without calling this processor (while the graph is being connected), the
// chunk so far is posted short (dropped before the first chunk) and the next one
// starts at its own time: the stamps show the hole, samples lie at their own time.
// Posting "stop" to its port ends it.

const TARGET_RATE = 16000;
const TAPS = 31;

function lowPass(ratio) {
  // cut-off at 0.45 of the output rate, in cycles per input sample
  const cutoff = 0.45 / ratio;
  const mid = (TAPS - 1) / 2;
  const h = new Float32Array(TAPS);
  let sum = 0;
  for (let k = 0; k < TAPS; k++) {
    const x = k - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const hamming = 0.54 - 0.46 * Math.cos((2 * Math.PI * k) / (TAPS - 1));
    h[k] = sinc * hamming;
    sum += h[k];
  }
  for (let k = 0; k < TAPS; k++) h[k] /= sum;
  return h;
}

// The processor's name (capture.js creates the node by it).
export const PROCESSOR_NAME = "pcm16k";

// Outside the audio thread (the page imports this module for its name) there is no
// AudioWorkletProcessor and no registerProcessor: define the class on a stand-in, register nothing.
const Base = globalThis.AudioWorkletProcessor || class {};

class Pcm16kProcessor extends Base {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.chunk = Math.max(160, Math.round(((o.chunkMs || 100) * TARGET_RATE) / 1000));
    this.ratio = sampleRate / TARGET_RATE; // input samples per output sample
    this.taps = this.ratio > 1 ? lowPass(this.ratio) : null;
    this.hist = new Float32Array(TAPS - 1); // the last TAPS-1 input samples (filter state)
    this.last = 0; // the last filtered sample of the previous block (index -1)
    this.pos = 0; // next output position, in input samples from the current block's start
    this.out = new Int16Array(this.chunk);
    this.filled = 0;
    this.chunkTime = 0;
    this.nextFrame = -1; // currentFrame the next block should have (-1: none yet)
    this.posted = false; // a chunk went out
    this.running = true;
    this.port.onmessage = (ev) => {
      if (ev.data === "stop") this.running = false;
    };
  }

  filter(mono) {
    if (!this.taps) return mono;
    const n = mono.length;
    const m = TAPS - 1;
    const buf = new Float32Array(m + n);
    buf.set(this.hist, 0);
    buf.set(mono, m);
    const y = new Float32Array(n);
    const h = this.taps;
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let k = 0; k < TAPS; k++) acc += h[k] * buf[i + k];
      y[i] = acc;
    }
    this.hist = buf.slice(n);
    return y;
  }

  post() {
    const pcm = this.filled === this.chunk ? this.out.buffer : this.out.slice(0, this.filled).buffer;
    this.port.postMessage({ t: this.chunkTime, pcm }, [pcm]);
    this.posted = true;
    this.out = new Int16Array(this.chunk);
    this.filled = 0;
  }

  emit(value, t) {
    if (this.filled === 0) this.chunkTime = t;
    const v = value < -1 ? -1 : value > 1 ? 1 : value;
    this.out[this.filled++] = v < 0 ? Math.round(v * 32768) : Math.round(v * 32767);
    if (this.filled === this.chunk) this.post();
  }

  process(inputs) {
    if (!this.running) return false;
    const input = inputs[0];
    // a block without input (the stream starting or stalling) is silence at its time, so
    // the output stays one sample per 1/16000 s of the audio clock and chunks never
    // hide a hole
    const n = input && input.length && input[0] ? input[0].length : 128;
    const mono = new Float32Array(n);
    if (input && input.length && input[0]) {
      for (const channel of input) for (let i = 0; i < n; i++) mono[i] += channel[i];
      if (input.length > 1) for (let i = 0; i < n; i++) mono[i] /= input.length;
    }
    const continuous = currentFrame === this.nextFrame;
    this.nextFrame = currentFrame + n;
    if (!continuous) {
      // the first block, or blocks went by without this processor (while the graph is
      // connected, the context renders ahead): close the chunk and start over from the
      // next block, so a chunk's samples follow each other on the audio clock. Before
      // the first chunk went out, the partial one is dropped instead: it would arrive
      // late by the hole and make the receiver's clock anchor late
      if (this.filled > 0 && this.posted) this.post();
      this.filled = 0;
      this.hist.fill(0);
      this.last = 0;
      this.pos = 0;
      return true;
    }
    const y = this.filter(mono);
    // currentTime: the context time of this block's first sample
    while (this.pos <= n - 1) {
      const i = Math.floor(this.pos);
      const f = this.pos - i;
      const a = i < 0 ? this.last : y[i];
      const b = f > 0 ? y[i + 1] : a;
      this.emit(a + (b - a) * f, currentTime + Math.max(0, this.pos) / sampleRate);
      this.pos += this.ratio;
    }
    this.pos -= n;
    this.last = y[n - 1];
    return true;
  }
}

if (typeof registerProcessor === "function") registerProcessor(PROCESSOR_NAME, Pcm16kProcessor);
