// The "Start my camera and microphone" control: opens the capture socket (/capture),
// streams this page's camera and microphone with capture.js, and, when the server
// answers with the new session's link, makes the page follow that session's stream
// (/s/<secret>, /ws?session=<secret>). A refusal (the server is full or not keeping
// up) and a disconnection show their reason.
//
// Server -> page on the capture socket: {"type": "session", session, link, stream} or
// {"type": "refused", reason} (then a close with code 1013 and the reason).

import { startCapture } from "./capture.js";
import { reconnect } from "./connection.js";
import { $, withToken } from "./page.js";
// the AudioWorklet capture.js loads (served next to the page); imported for its name only
import { PROCESSOR_NAME } from "./pcm-worklet.js";

const cap = { ws: null, capture: null, stopping: false, session: null };

export function showCaptureControls(show) {
  $("capture").hidden = !show;
}

function say(state, text) {
  const el = $("capture-status");
  el.dataset.state = state;
  el.textContent = text;
}

function setRunning(running) {
  $("capture-start").hidden = running;
  $("capture-start").disabled = false;
  $("capture-stop").hidden = !running;
  $("capture-preview").hidden = !running;
}

function captureUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return withToken(`${proto}//${location.host}/capture`);
}

function follow(msg) {
  cap.session = msg.session;
  const link = $("session-link");
  link.href = withToken(msg.link);
  link.hidden = false;
  history.replaceState(null, "", withToken(msg.link));
  reconnect(); // this page now shows its own session
  say("live", `monitoring you · session ${msg.session}`);
}

function onServerMessage(ev) {
  if (typeof ev.data !== "string") return;
  let msg;
  try {
    msg = JSON.parse(ev.data);
  } catch (err) {
    return;
  }
  if (msg.type === "session") follow(msg);
  else if (msg.type === "refused") say("refused", `refused: ${msg.reason}`);
}

function release() {
  if (cap.capture) cap.capture.stop();
  cap.capture = null;
  setRunning(false);
}

async function start() {
  $("capture-start").disabled = true;
  say("starting", "asking for your camera and microphone…");
  cap.stopping = false;
  const ws = new WebSocket(captureUrl());
  ws.binaryType = "arraybuffer";
  cap.ws = ws;
  ws.onmessage = onServerMessage;
  ws.onclose = (ev) => {
    if (cap.ws === ws) cap.ws = null;
    const refused = $("capture-status").dataset.state === "refused";
    release();
    if (refused) return; // the reason is on show already
    if (ev.code === 1013) say("refused", `refused: ${ev.reason || "the server cannot take another session now"}`);
    else if (cap.stopping || ev.code === 1000) say("stopped", "stopped; the scores stay on screen");
    else say("error", `disconnected: ${ev.reason || `connection lost (code ${ev.code})`}`);
  };
  try {
    await new Promise((resolve, reject) => {
      ws.addEventListener("open", resolve, { once: true });
      ws.addEventListener("close", () => reject(new Error("the server refused the capture connection")), { once: true });
    });
    cap.capture = await startCapture(ws, {
      preview: $("capture-preview"),
      onEnded: (kind) => {
        say("error", `your ${kind === "audio" ? "microphone" : "camera"} stopped`);
        stop();
      },
    });
    if (ws.readyState !== WebSocket.OPEN) {
      release(); // refused or cut off while the devices were opening
      return;
    }
    setRunning(true);
    if ($("capture-status").dataset.state === "starting") say("starting", "starting your session…");
  } catch (err) {
    release();
    if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    if ($("capture-status").dataset.state !== "refused") say("error", err.message || String(err));
  }
}

function stop() {
  cap.stopping = true;
  if (cap.capture) cap.capture.stop(); // sends "end"
  cap.capture = null;
  if (cap.ws && cap.ws.readyState === WebSocket.OPEN) cap.ws.close(1000, "stopped");
  setRunning(false);
}

export function wireCapture() {
  if (PROCESSOR_NAME !== "pcm16k") throw new Error("pcm-worklet.js and capture.js disagree on the processor");
  $("capture-start").addEventListener("click", start);
  $("capture-stop").addEventListener("click", stop);
  window.addEventListener("pagehide", () => {
    if (cap.capture) stop();
  });
}
