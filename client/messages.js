// The protocol's messages (realtime/protocol.py) into the page's state: hello,
// window, session, status, stats, error.

import { showCaptureControls } from "./capture-ui.js";
import { onLabels, setupLabels } from "./labels.js";
import { $ } from "./page.js";
import { renderHealth, renderHistoryNote, renderModel, renderStatus } from "./panels.js";
import { renderAll } from "./render.js";
import { setReplayIndex, setupVideo, stopPlay } from "./replay.js";
import { state } from "./state.js";
import { addWords } from "./transcript.js";

const MAX_WINDOWS = 20000;     // kept in memory (about 3 h at 2 windows/s)

export function handle(msg) {
  switch (msg.type) {
    case "hello": return onHello(msg);
    case "window": return onWindow(msg);
    case "session": return onSession(msg);
    case "status": return onStatus(msg);
    case "stats": return onStats(msg);
    case "error": return onError(msg);
    case "labels": return onLabels(msg);
    default: return undefined;
  }
}

function resetData() {
  state.windows = [];
  state.seqs = new Set();
  state.pageCut = 0;
  state.words = [];
  state.wordKeys = new Set();
  state.current = null;
  stopPlay();
}

function onHello(msg) {
  if (state.session !== msg.session || state.mode !== msg.mode) resetData();
  state.hello = msg;
  state.session = msg.session;
  state.mode = msg.mode === "replay" ? "replay" : "live";
  state.stepSeconds = (msg.settings && msg.settings.step_seconds) || 0.5;
  $("session-id").textContent = msg.session ? `session ${msg.session}` : "";
  const replay = state.mode === "replay";
  $("replay-controls").hidden = !replay;
  for (const el of document.querySelectorAll("[data-live-only]")) el.hidden = replay;
  for (const el of document.querySelectorAll("[data-replay-only]")) el.hidden = !replay;
  $("chart").classList.toggle("scrubbable", replay);
  showCaptureControls(Boolean(msg.capture) && !replay);
  renderModel();
  renderHistoryNote();
  setupVideo();
  setupLabels();
  renderStatus();
  renderAll();
}

// a problem the server reports (e.g. the recording stopped: the disk is full)
function onError(msg) {
  const el = $("server-error");
  el.hidden = false;
  el.textContent = `Server: ${msg.message}`;
}

function onStatus(msg) {
  state.status = msg;
  renderStatus();
  renderAll();
}

// a window message: a new seq is inserted in order; a higher revision of a seq already
// here replaces it (protocol v2: the window was scored again on newer words); a revision
// not above the one held is stale and ignored
function onWindow(msg) {
  if (state.mode === "replay") return;
  const ws = state.windows;
  if (state.seqs.has(msg.seq)) {
    let i = ws.length - 1;  // revisions are of the newest windows: search from the end
    while (i >= 0 && ws[i].seq !== msg.seq) i -= 1;
    if (i < 0 || (ws[i].revision || 0) >= (msg.revision || 0)) return;
    ws[i] = msg;
  } else {
    state.seqs.add(msg.seq);
    if (!ws.length || ws[ws.length - 1].seq < msg.seq) {
      ws.push(msg);
    } else {
      let i = ws.length;
      while (i > 0 && ws[i - 1].seq > msg.seq) i -= 1;
      ws.splice(i, 0, msg);
    }
  }
  if (ws.length > MAX_WINDOWS) {
    const gone = ws.splice(0, ws.length - MAX_WINDOWS);
    for (const old of gone) state.seqs.delete(old.seq);
    state.pageCut += gone.length;
    renderHistoryNote();
  }
  addWords(msg.words);
  if (!state.current || msg.seq >= state.current.seq) state.current = msg;
  state.lastWindowAt = performance.now();
  if (state.status && state.status.state === "loading") {
    state.status = { state: "running", detail: "" };
    renderStatus();
  }
  renderAll();
}

function onSession(msg) {
  // the same session again (a reconnect): stay where the person was scrubbing
  const keep = state.windows.length && state.windows[0].session === msg.session ? state.replayIndex : 0;
  resetData();
  // one window per seq (the last given wins, as on a live page), in seq order
  const bySeq = new Map();
  for (const w of msg.windows || []) bySeq.set(w.seq, w);
  state.windows = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  state.seqs = new Set(state.windows.map((w) => w.seq));
  addWords(msg.words);
  for (const w of state.windows) addWords(w.words);
  $("timeline").max = String(Math.max(0, state.windows.length - 1));
  setReplayIndex(keep);
}

function onStats(msg) {
  state.stats = msg;
  renderHealth();
}
