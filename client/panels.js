// The text panels: the model bar, the history note, the mode badge and status, the
// Now card (score, label, modalities, screen-reader announcement), the health figures.

import { isOpen, setConn } from "./connection.js";
import { fmtScore, fmtTime, joinWords, textSpan } from "./format.js";
import { $, withToken } from "./page.js";
import { ABSENT_TEXT, MODALITIES, PRESENT_TEXT, modelInputs, scored, state } from "./state.js";

export function renderModel() {
  const model = (state.hello && state.hello.model) || {};
  const inputs = modelInputs();
  const unscored = MODALITIES.filter((m) => !inputs.includes(m));
  const el = $("model-text");
  el.replaceChildren();
  const b = document.createElement("b");
  b.textContent = model.name ? `${model.name}${model.version ? " " + model.version : ""}` : "unknown model";
  el.append("Model ", b, ` scores ${joinWords(inputs)}${unscored.length ? " only" : ""}.`);
  if (unscored.length) {
    el.append(` ${joinWords(unscored).replace(/^./, (c) => c.toUpperCase())} ${unscored.length > 1 ? "are" : "is"} shown but not scored: ${unscored.length > 1 ? "they do" : "it does"} not change the score.`);
  }
  el.dataset.inputs = inputs.join(",");
  const card = $("model-card");
  const url = state.hello && state.hello.model_card;
  card.hidden = !url;
  if (url) card.href = withToken(url);
  for (const m of MODALITIES) $(`weights-figure-${m}`).dataset.scored = String(scored(m));
  // the map shown is the text guide's attention over the video steps
  $("attention-card").dataset.scored = String(scored("video") && scored("text"));
}

export function renderHistoryNote() {
  const h = (state.hello && state.hello.history) || {};
  const note = $("history-note");
  const cut = (Number(h.cut) || 0) + state.pageCut;
  if (!cut) {
    note.hidden = true;
    return;
  }
  const rec = state.hello && state.hello.recording;
  note.hidden = false;
  note.dataset.cut = String(cut);
  note.textContent =
    `This page shows the last ${state.windows.length} windows; the ${cut} before them were cut ` +
    `(the server keeps ${h.limit || "a limited number of"} windows for tabs that open late). ` +
    (rec ? "Export CSV still has the whole session, from the recording." :
      "Export CSV has only what is shown here; record with hcl-live --record to keep whole sessions.");
}


export function renderStatus() {
  const badge = $("mode");
  const st = state.status ? state.status.state : null;
  const el = $("status");
  const open = isOpen();
  if (state.mode === "replay") {
    badge.dataset.mode = "replay";
    badge.textContent = "REPLAY";
    el.dataset.state = "finished";
    el.textContent = "recorded session";
  } else if (st === "finished") {
    badge.dataset.mode = "finished";
    badge.textContent = "FINISHED";
    el.dataset.state = "finished";
    el.textContent = `finished${state.status.detail ? " · " + state.status.detail : ""}`;
  } else if (st === "loading") {
    badge.dataset.mode = "live";
    badge.textContent = "LIVE";
    el.dataset.state = "loading";
    el.textContent = "loading models…";
  } else if (st === "running") {
    badge.dataset.mode = "live";
    badge.textContent = "LIVE";
    el.dataset.state = "running";
    el.textContent = "running";
  } else {
    el.dataset.state = "connecting";
    el.textContent = open ? "" : "connecting…";
  }
  if (open) setConn("open", st === "finished" && state.mode === "live" ? "connected · the file has ended" : "connected");
}

export function renderNow() {
  const w = state.current;
  const score = $("score");
  const label = $("label");
  score.closest(".now").classList.toggle("is-provisional", Boolean(w && w.provisional));
  if (!w) {
    score.textContent = "–";
    score.dataset.seq = "";
    score.dataset.revision = "";
    score.dataset.provisional = "false";
    score.dataset.polarity = "none";
    const st = state.status && state.status.state;
    label.textContent = state.mode === "replay" ? "no windows in this session"
      : st === "loading" ? "loading the models: the first score comes in a few seconds"
        : st === "finished" ? "the file ended before the first window" : "waiting for the first window";
    $("window-time").textContent = "\u00a0";
    $("text-span").textContent = "";
    for (const m of MODALITIES) setModality(m, null);
    return;
  }
  score.textContent = fmtScore(w.score);
  score.dataset.value = String(w.score);
  score.dataset.seq = String(w.seq);
  score.dataset.revision = String(w.revision || 0);
  score.dataset.provisional = String(Boolean(w.provisional));
  score.dataset.polarity = w.polarity;
  score.title = w.provisional ? "provisional: read words the speech recogniser may still change" : "";
  label.textContent = w.label;
  $("window-time").textContent = `window ${fmtTime(w.start)}–${fmtTime(w.end)} · #${w.seq}` +
    (w.provisional ? " · provisional" : "");
  const span = textSpan(w);
  const ts = $("text-span");
  ts.textContent = span ? `words read ${fmtTime(span[0])}–${fmtTime(span[1])}` : "no words read";
  ts.dataset.start = span ? String(span[0]) : "";
  ts.dataset.end = span ? String(span[1]) : "";
  for (const m of MODALITIES) setModality(m, w.presence ? Boolean(w.presence[m]) : null);
  announce(w.label);
}

// screen readers hear the label when it changes, not every window
function announce(text) {
  if (text === state.announced) return;
  state.announced = text;
  $("announce").textContent = `Now ${text}`;
}

function setModality(m, present) {
  const el = $(`modality-${m}`);
  el.dataset.present = present === null ? "unknown" : String(present);
  el.dataset.scored = String(scored(m));
  el.title = scored(m) ? "" : "this model does not score this modality: it is shown but does not change the score";
  const text = present === null ? "–" : present ? PRESENT_TEXT[m] : ABSENT_TEXT[m];
  el.querySelector(".m-state").textContent = scored(m) ? text : `${text} · not scored`;
}

export function renderHealth() {
  const st = state.stats;
  const lat = st && st.latency_ms ? st.latency_ms.total || st.latency_ms.server_send : null;
  $("latency").textContent =
    lat && lat.p50 !== null && lat.p50 !== undefined ? `p50 ${Math.round(lat.p50)} · p95 ${Math.round(lat.p95)} ms` : "–";
  const fromWindow = state.current && state.mode === "live" ? state.current.dropped || 0 : 0;
  const pipeline = Math.max(fromWindow, st ? Number(st.dropped_windows) || 0 : 0);
  const clientDrops = st ? Number(st.client_drops) || 0 : 0;
  const el = $("dropped");
  el.textContent = clientDrops ? `${pipeline} (+${clientDrops} to slow screens)` : String(pipeline);
  el.title = `${pipeline} windows skipped by the pipeline; ${clientDrops} messages dropped for slow dashboards`;
}

export function checkStale() {
  const now = $("score").closest(".now");
  const stale = $("stale");
  const finished = state.status && state.status.state === "finished";
  const live = state.mode === "live" && state.current && isOpen();
  const age = (performance.now() - state.lastWindowAt) / 1000;
  const isStale = Boolean(live && !finished && age > Math.max(3, 4 * state.stepSeconds));
  stale.hidden = !isStale;
  if (isStale) stale.textContent = `no new window for ${Math.floor(age)} s`;
  now.classList.toggle("is-stale", isStale || Boolean(state.current && state.mode === "live" && !live));
}
