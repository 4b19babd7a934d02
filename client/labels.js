// Labelling a replayed recording: a person marks spans with a sentiment value in [-3, 3],
// saved by the server as labels.json beside the recording (hcl/data/recordings.py), which
// hcl-extract reads. Keyboard: [ marks the start and ] the end at the video's current time
// (the window on show without a video); then a digit 0-3 saves the span with that value,
// after - (or n) for a negative one; Delete removes the span at the current time.

import { send } from "./connection.js";
import { fmtTime } from "./format.js";
import { $ } from "./page.js";
import { state } from "./state.js";

const labels = { spans: [], start: null, end: null, sign: 1, enabled: false };

function now() {
  const v = $("replay-video");
  if (v && !$("video-card").hidden && v.getAttribute("src") && Number.isFinite(v.currentTime)) return v.currentTime;
  return state.current ? state.current.end : 0;
}

function say(text, kind = "info") {
  const el = $("labels-status");
  el.textContent = text;
  el.dataset.kind = kind;
}

export function setupLabels() {
  const rec = state.hello && state.hello.recording;
  labels.enabled = Boolean(state.mode === "replay" && rec && rec.labels);
  $("labels-card").hidden = !labels.enabled;
  $("grid").classList.toggle("has-labels", labels.enabled);
  renderLabels();
}

export function onLabels(msg) {
  labels.spans = msg.spans || [];
  if (msg.error) say(`Not saved: ${msg.error}`, "error");
  else if (msg.saved) say(`Saved: labels.json holds ${labels.spans.length} span${labels.spans.length === 1 ? "" : "s"}.`, "ok");
  renderLabels();
}

function renderLabels() {
  const mark = $("labels-mark");
  const a = labels.start;
  const b = labels.end;
  mark.textContent = a === null ? "no span marked: press [ at its start"
    : b === null ? `start ${fmtTime(a)}: press ] at its end`
      : `span ${fmtTime(a)}–${fmtTime(b)}: press a value 0-3 (after - for negative)${labels.sign < 0 ? " · negative" : ""}`;
  mark.dataset.start = a === null ? "" : String(a);
  mark.dataset.end = b === null ? "" : String(b);
  const list = $("labels-list");
  list.replaceChildren(...labels.spans.map((s) => {
    const li = document.createElement("li");
    li.dataset.start = String(s.start);
    li.dataset.end = String(s.end);
    li.dataset.label = String(s.label);
    const text = document.createElement("span");
    text.textContent = `${fmtTime(s.start)}–${fmtTime(s.end)}  ${s.label > 0 ? "+" : ""}${s.label}${s.mode ? ` (${s.mode})` : ""}`;
    const del = document.createElement("button");
    del.type = "button";
    del.className = "btn";
    del.textContent = "delete";
    del.setAttribute("aria-label", `delete the label of ${fmtTime(s.start)}–${fmtTime(s.end)}`);
    del.addEventListener("click", () => remove(s.start, s.end));
    li.append(text, " ", del);
    return li;
  }));
  $("labels-count").textContent = String(labels.spans.length);
}

function markStart() {
  labels.start = now();
  labels.end = null;
  labels.sign = 1;
  renderLabels();
}

function markEnd() {
  const t = now();
  if (labels.start === null) return say("Press [ at the span's start first.", "error");
  if (t < labels.start) [labels.start, labels.end] = [t, labels.start];
  else labels.end = t;
  labels.sign = 1;
  renderLabels();
  return undefined;
}

function save(value) {
  if (labels.start === null || labels.end === null) return say("Mark a span first: [ at its start, ] at its end.", "error");
  if (labels.end - labels.start < 0.5) return say("A span lasts at least 0.5 s: mark its end later.", "error");
  const msg = { type: "set_label", start: labels.start, end: labels.end, label: value };
  if (!send(msg)) return say("Not connected: the label was not saved; try again when connected.", "error");
  say(`Saving ${fmtTime(labels.start)}–${fmtTime(labels.end)} as ${value > 0 ? "+" : ""}${value}…`);
  labels.start = null;
  labels.end = null;
  labels.sign = 1;
  renderLabels();
  return undefined;
}

function remove(start, end) {
  if (!send({ type: "delete_label", start, end })) say("Not connected: nothing was deleted.", "error");
}

function removeAtNow() {
  const t = now();
  const s = labels.spans.find((x) => x.start <= t && t < x.end);
  if (!s) return say(`No label at ${fmtTime(t)}.`, "error");
  remove(s.start, s.end);
  return undefined;
}

function onKey(ev) {
  if (!labels.enabled || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const target = ev.target;
  if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
  const k = ev.key;
  if (k === "[") markStart();
  else if (k === "]") markEnd();
  else if (k === "-" || k === "n") {
    labels.sign = -labels.sign;
    renderLabels();
  } else if (/^[0-3]$/.test(k)) save(labels.sign * Number(k));
  else if (k === "Delete" || k === "Backspace") removeAtNow();
  else if (k === "Escape") {
    labels.start = null;
    labels.end = null;
    labels.sign = 1;
    renderLabels();
  } else return;
  ev.preventDefault();
}

export function wireLabels() {
  document.addEventListener("keydown", onKey);
  $("labels-start").addEventListener("click", markStart);
  $("labels-end").addEventListener("click", markEnd);
  $("labels-save").addEventListener("click", () => save(Number($("labels-value").value)));
}
