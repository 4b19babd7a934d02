// Browser capture: this page's camera and microphone sent to the server over a
// WebSocket as binary messages in the capture format (realtime/capture_protocol.py,
// docs/capture-protocol.md): a 24-byte header, then 16 kHz mono int16 PCM (audio)
// or a JPEG (video).
//
//   const capture = await startCapture(ws, { fps: 10, width: 320, preview: videoElement });
//   ...
//   capture.stop();   // or stopCapture(capture): sends "end", releases the devices
//
// Audio comes from an AudioWorklet (pcm-worklet.js) in chunks of `chunkMs`, stamped
// with the audio clock; video is drawn on a canvas `width` px wide at `fps` and sent
// as JPEG. Times are ms on performance.now(), counted from the capture start. A
// frame is skipped (counted) while the previous one is still being encoded or the
// socket has more than `maxBuffered` bytes waiting: a slow link lowers the frame
// rate instead of queueing stale frames.

export const MAGIC = [0x48, 0x43, 0x4c, 0x63]; // "HCLc"
export const VERSION = 1;
export const KIND = Object.freeze({ hello: 1, audio: 2, video: 3, end: 4 });
export const HEADER_BYTES = 24;
export const SAMPLE_RATE = 16000;

export const DEFAULTS = Object.freeze({
  audio: true,
  video: true,
  fps: 10, // the face analysis rate
  width: 320, // px of the frames sent (height follows the camera's aspect)
  quality: 0.7, // JPEG quality
  chunkMs: 100, // audio per message
  audioProcessing: false, // the browser's echo cancellation, noise suppression and gain control
  maxBuffered: 512 * 1024, // bytes waiting in the socket above which frames are skipped
  preview: null, // a <video> element to show the camera in, if given
  workletUrl: new URL("./pcm-worklet.js", import.meta.url).href,
  onEnded: null, // called when a device goes away (unplugged, permission revoked)
});

/** One capture message: header (little-endian) + payload bytes. */
export function packMessage(kind, seq, tMs, payload) {
  const body =
    payload == null
      ? new Uint8Array(0)
      : payload instanceof ArrayBuffer
        ? new Uint8Array(payload)
        : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  const buf = new ArrayBuffer(HEADER_BYTES + body.byteLength);
  const view = new DataView(buf);
  MAGIC.forEach((b, i) => view.setUint8(i, b));
  view.setUint8(4, VERSION);
  view.setUint8(5, kind);
  view.setUint16(6, 0, true);
  view.setUint32(8, seq >>> 0, true);
  view.setFloat64(12, Math.max(0, tMs), true);
  view.setUint32(20, body.byteLength, true);
  new Uint8Array(buf, HEADER_BYTES).set(body);
  return buf;
}

/**
 * Call `fn` every `ms` from a dedicated worker's timer: a hidden tab's own timers are
 * throttled to once a second or less, a worker's are not. Falls back to setInterval.
 * Returns the function that stops it.
 */
function ticker(ms, fn) {
  try {
    const url = URL.createObjectURL(new Blob([`setInterval(() => postMessage(0), ${ms});`], { type: "text/javascript" }));
    const worker = new Worker(url);
    URL.revokeObjectURL(url);
    worker.onmessage = fn;
    return () => worker.terminate();
  } catch (err) {
    const id = setInterval(fn, ms);
    return () => clearInterval(id);
  }
}

function captureError(err) {
  if (!window.isSecureContext) {
    return new Error("camera and microphone need a secure page: open it on http://127.0.0.1 or localhost, or over https");
  }
  if (err && err.name === "NotAllowedError") return new Error("camera/microphone permission was refused; allow it in the address bar and try again");
  if (err && err.name === "NotFoundError") return new Error("no camera or microphone was found on this device");
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * Start capturing and sending over `ws` (an open WebSocket; binaryType does not matter).
 * Resolves to {stream, stats, stop()} once the devices are open and the hello is sent.
 */
export async function startCapture(ws, options = {}) {
  const o = { ...DEFAULTS, ...options };
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw captureError(null);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      // the raw microphone, as the server's own microphone source gets it (no browser
      // gain control or noise suppression changing the voice the model hears)
      audio: o.audio ? { channelCount: 1, echoCancellation: o.audioProcessing, noiseSuppression: o.audioProcessing, autoGainControl: o.audioProcessing } : false,
      video: o.video ? { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: Math.max(15, o.fps) } } : false,
    });
  } catch (err) {
    throw captureError(err);
  }
  // The capture clock's zero: the first audio sample when there is audio (audio times
  // are then exact sample times: the audio clock runs ahead of real time while the
  // context starts, so mapping its times onto performance.now() any earlier would be
  // off by that much), else the moment the devices opened. Video times are
  // performance.now() - t0; frames drawn before t0 is known are not sent.
  let t0 = null;
  const stats = { audioChunks: 0, audioSeconds: 0, frames: 0, skippedFrames: 0, skippedAudio: 0, bytes: 0 };
  let seq = 0;
  let stopped = false;
  const send = (kind, tMs, payload) => {
    if (ws.readyState !== WebSocket.OPEN) return false;
    const data = packMessage(kind, seq++, tMs, payload);
    ws.send(data);
    stats.bytes += data.byteLength;
    return true;
  };

  const audioTrack = stream.getAudioTracks()[0] || null;
  const videoTrack = stream.getVideoTracks()[0] || null;
  const vs = videoTrack ? videoTrack.getSettings() : {};
  const width = Math.round(o.width / 2) * 2;
  const height = vs.width && vs.height ? Math.max(2, Math.round((width * vs.height) / vs.width / 2) * 2) : Math.round((width * 3) / 4);
  const hello = {
    audio: !!audioTrack, video: !!videoTrack, sample_rate: SAMPLE_RATE, fps: o.fps, width, height,
    agent: navigator.userAgent.slice(0, 200),
  };
  send(KIND.hello, 0, new TextEncoder().encode(JSON.stringify(hello)));

  // ---- video: canvas at `fps`, JPEG (set up first: the page is then idle when the audio
  // starts, so the first chunks do not wait behind it)
  let stopTicker = null;
  let video = null;
  if (videoTrack) {
    video = o.preview || document.createElement("video");
    video.muted = true;
    video.playsInline = true;
    video.srcObject = stream;
    await video.play();
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const g = canvas.getContext("2d");
    let busy = false;
    stopTicker = ticker(1000 / o.fps, () => {
      if (stopped) return;
      if (t0 === null) return; // the audio has not started yet
      if (busy || video.readyState < 2 || ws.bufferedAmount > o.maxBuffered) {
        stats.skippedFrames += 1;
        return;
      }
      const tMs = performance.now() - t0;
      g.drawImage(video, 0, 0, width, height);
      busy = true;
      canvas.toBlob(
        async (blob) => {
          try {
            if (blob && !stopped && send(KIND.video, tMs, await blob.arrayBuffer())) stats.frames += 1;
          } finally {
            busy = false;
          }
        },
        "image/jpeg",
        o.quality,
      );
    });
  }

  // ---- audio: AudioWorklet -> 16 kHz int16 chunks stamped on the audio clock
  let ctx = null;
  let node = null;
  if (audioTrack) {
    ctx = new AudioContext();
    await ctx.audioWorklet.addModule(o.workletUrl);
    const src = ctx.createMediaStreamSource(new MediaStream([audioTrack]));
    node = new AudioWorkletNode(ctx, "pcm16k", { numberOfInputs: 1, numberOfOutputs: 1, processorOptions: { chunkMs: o.chunkMs } });
    let first = null; // context time of the first sample sent
    node.port.onmessage = (ev) => {
      if (stopped) return;
      const { t, pcm } = ev.data;
      const samples = pcm.byteLength / 2;
      if (first === null) {
        first = t;
        t0 = performance.now() - (samples * 1000) / SAMPLE_RATE; // this chunk just filled up
      }
      if (ws.bufferedAmount > 4 * o.maxBuffered) {
        stats.skippedAudio += 1; // the link is gone or far too slow: do not pile up memory
        return;
      }
      if (send(KIND.audio, (t - first) * 1000, pcm)) {
        stats.audioChunks += 1;
        stats.audioSeconds += samples / SAMPLE_RATE;
      }
    };
    node.connect(ctx.destination); // keeps the node rendering; it writes silence
    src.connect(node);
    await ctx.resume();
  }

  if (!audioTrack) t0 = performance.now();

  const stop = () => {
    if (stopped) return;
    stopped = true;
    if (stopTicker !== null) stopTicker();
    if (node) {
      node.port.postMessage("stop");
      node.disconnect();
    }
    if (ctx) ctx.close();
    send(KIND.end, t0 === null ? 0 : performance.now() - t0, null);
    for (const track of stream.getTracks()) track.stop();
    if (video && video !== o.preview) video.srcObject = null;
  };
  for (const track of stream.getTracks()) {
    track.addEventListener("ended", () => {
      stop();
      if (o.onEnded) o.onEnded(track.kind);
    });
  }
  return { stream, stats, hello, stop };
}

/** Stop a capture started by startCapture (sends "end", releases the devices). */
export function stopCapture(capture) {
  if (capture) capture.stop();
}
