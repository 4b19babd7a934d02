// The readouts panel: per face a small strip over time per readout, and one for the voice
// (window messages' "readouts", protocol v3). They are measurements for people to read:
// not model inputs, they do not change the score.

import { $ } from "./page.js";
import { state } from "./state.js";

// one sentence per readout: the same texts as hcl/features/readouts.py READOUT_HELP and
// VOICE_HELP (tests/test_dashboard_readouts.py checks that they agree)
export const FACE_HELP = {
  smile: "How far the mouth corners are pulled up and out, from 0 (not at all) to 1 (a full smile).",
  frown: "How far the mouth corners are pulled down, from 0 to 1.",
  brow_lowered: "How far the eyebrows are pulled down (as in concentrating or scowling), from 0 to 1.",
  brow_raised: "How far the eyebrows are raised (as in surprise or emphasis), from 0 to 1.",
  eyes_widened: "How far the eyelids are opened wider than at rest, from 0 to 1.",
  jaw_open: "How far the jaw is open (talking, laughing, surprise), from 0 to 1.",
  head_movement: "How fast the head turns (nodding, shaking, tilting), in degrees per second; moving without turning does not count.",
  uncalibrated_expression: "Probabilities of 7 expressions from a small FER2013 classifier: uncalibrated, untested on webcams here, and not a measure of what the person feels.",
};
export const VOICE_HELP = {
  loudness_dbfs: "How loud the voice is, in dB below the loudest a recording can hold (0 dBFS); silent moments are left out.",
  pitch_hz: "How high the voice is: the median pitch of the voiced moments, in Hz.",
  pitch_variability_st: "How much the pitch moves (a lively versus a flat voice): its spread in semitones.",
  voiced_fraction: "The share of the window in which the voice sounds (vowels and other voiced sounds).",
  speaking_rate: "Words per second in the window, from the transcript's word timings.",
  pauses: "How many gaps of a quarter second or more lie between consecutive words in the window.",
  pause_seconds: "The total length of those gaps inside the window, in seconds.",
};

// [key, label, strip range (lo, hi) or null for 0 .. the largest seen, unit, digits]
const FACE_ROWS = [
  ["smile", "smile", [0, 1], "", 2],
  ["frown", "frown", [0, 1], "", 2],
  ["brow_lowered", "brow lowered", [0, 1], "", 2],
  ["brow_raised", "brow raised", [0, 1], "", 2],
  ["eyes_widened", "eyes widened", [0, 1], "", 2],
  ["jaw_open", "jaw open", [0, 1], "", 2],
  ["head_movement", "head movement", null, "°/s", 0],
];
const VOICE_ROWS = [
  ["loudness_dbfs", "loudness", [-60, 0], " dBFS", 0],
  ["pitch_hz", "pitch", [60, 400], " Hz", 0],
  ["pitch_variability_st", "pitch variability", [0, 8], " st", 1],
  ["voiced_fraction", "voiced", [0, 1], "", 2],
  ["speaking_rate", "speaking rate", [0, 5], " words/s", 1],
  ["pauses", "pauses", [0, 4], "", 0],
  ["pause_seconds", "pause time", [0, 4], " s", 1],
];
const STRIP_WINDOWS = 60;      // the strips show the last 60 windows up to the one on show (30 s at 0.5 s)
const MAX_FACE_PANELS = 4;
const SVG = "http://www.w3.org/2000/svg";

// the windows the strips cover: up to the one on show (replay: the position; live: the newest)
function stripWindows() {
  const ws = state.windows;
  if (!ws.length || !state.current) return [];
  let end = ws.length;
  if (state.mode === "replay") end = state.replayIndex + 1;
  return ws.slice(Math.max(0, end - STRIP_WINDOWS), end);
}

function fmt(v, unit, digits) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  return `${v.toFixed(digits)}${unit}`;
}

// a strip: one point per window (gaps where there is no value), scaled to [lo, hi]
function strip(values, range, label) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 100 20");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "strip");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${label} over the last ${values.length} windows`);
  const finite = values.filter((v) => v !== null && Number.isFinite(v));
  const [lo, hi] = range || [0, Math.max(1, ...finite)];
  const n = values.length;
  let d = "";
  let pen = false;
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) {
      pen = false;
      return;
    }
    const x = n > 1 ? (100 * i) / (n - 1) : 100;
    const y = 19 - 18 * Math.max(0, Math.min(1, (v - lo) / (hi - lo || 1)));
    d += `${pen ? "L" : "M"}${x.toFixed(2)} ${y.toFixed(2)} `;
    pen = true;
  });
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", d.trim() || "M0 19");
  path.setAttribute("vector-effect", "non-scaling-stroke");
  svg.append(path);
  return svg;
}

function row(key, label, values, range, unit, digits, help) {
  const li = document.createElement("li");
  li.className = "readout";
  li.dataset.readout = key;
  li.title = help;
  const name = document.createElement("span");
  name.className = "r-name";
  name.textContent = label;
  const now = values.length ? values[values.length - 1] : null;
  const value = document.createElement("span");
  value.className = "r-value";
  value.dataset.testid = `readout-${key}`;
  value.dataset.value = now === null || now === undefined ? "" : String(now);
  value.textContent = fmt(now, unit, digits);
  li.append(name, strip(values, range, label), value);
  return li;
}

function facePanel(id, windows, current) {
  const face = (w) => ((w.readouts && w.readouts.faces) || []).find((f) => f.face_id === id) || null;
  const now = current ? face(current) : null;
  const panel = document.createElement("section");
  panel.className = "readout-panel";
  panel.dataset.testid = "face-panel";
  panel.dataset.faceId = String(id);
  panel.dataset.speaker = String(Boolean(now && now.speaker));
  panel.dataset.inView = String(Boolean(now));
  const h = document.createElement("h3");
  h.textContent = `Face ${id}`;
  if (now && now.speaker) {
    const b = document.createElement("span");
    b.className = "speaker-badge";
    b.textContent = "speaker";
    b.title = "the face the model reads (the largest in view)";
    h.append(" ", b);
  }
  if (!now) h.append(" · not in view now");
  panel.append(h);
  const ul = document.createElement("ul");
  for (const [key, label, range, unit, digits] of FACE_ROWS) {
    const values = windows.map((w) => {
      const f = face(w);
      return f && f[key] !== null && f[key] !== undefined ? Number(f[key]) : null;
    });
    ul.append(row(key, label, values, range, unit, digits, FACE_HELP[key]));
  }
  panel.append(ul);
  const expr = now && now.uncalibrated_expression;
  if (expr) {
    const p = document.createElement("p");
    p.className = "expression caption";
    p.title = FACE_HELP.uncalibrated_expression;
    const top = Object.entries(expr).sort((a, b) => b[1] - a[1]).slice(0, 3);
    p.textContent = `Uncalibrated FER2013 classifier (not what the person feels): ${top.map(([k, v]) => `${k} ${v.toFixed(2)}`).join(" · ")}`;
    panel.append(p);
  }
  return panel;
}

function voicePanel(windows) {
  const panel = document.createElement("section");
  panel.className = "readout-panel";
  panel.dataset.testid = "voice-panel";
  const h = document.createElement("h3");
  h.textContent = "Voice";
  panel.append(h);
  const ul = document.createElement("ul");
  for (const [key, label, range, unit, digits] of VOICE_ROWS) {
    const values = windows.map((w) => {
      const v = w.readouts && w.readouts.voice;
      return v && v[key] !== null && v[key] !== undefined ? Number(v[key]) : null;
    });
    ul.append(row(key, label, values, range, unit, digits, VOICE_HELP[key]));
  }
  panel.append(ul);
  return panel;
}

// face ids to show: those of the window on show (the speaker first), then others seen in the strip's windows
function faceIds(windows, current) {
  const ids = [];
  for (const f of (current && current.readouts && current.readouts.faces) || []) ids.push(f.face_id);
  for (let i = windows.length - 1; i >= 0 && ids.length < MAX_FACE_PANELS; i -= 1) {
    for (const f of (windows[i].readouts && windows[i].readouts.faces) || []) {
      if (!ids.includes(f.face_id) && ids.length < MAX_FACE_PANELS) ids.push(f.face_id);
    }
  }
  return ids.slice(0, MAX_FACE_PANELS);
}

let drawnKey = "";
export function renderReadouts() {
  const card = $("readouts-card");
  const windows = stripWindows();
  const current = windows.length ? windows[windows.length - 1] : null;
  const any = windows.some((w) => w.readouts);
  const key = `${windows.length}|${current ? `${current.seq}.${current.revision || 0}` : ""}|${state.session}`;
  if (key === drawnKey) return;
  drawnKey = key;
  card.dataset.state = any ? "shown" : "none";
  const faces = $("readouts-faces");
  const voice = $("readouts-voice");
  if (!any) {
    $("readouts-summary").textContent = state.windows.length
      ? "This session's windows carry no readouts (recorded before protocol 3, or run without readouts)."
      : "No readouts yet.";
    faces.replaceChildren();
    voice.replaceChildren();
    return;
  }
  const ids = faceIds(windows, current);
  faces.replaceChildren(...ids.map((id) => facePanel(id, windows, current)));
  const hasVoice = windows.some((w) => w.readouts && w.readouts.voice);
  voice.replaceChildren(...(hasVoice ? [voicePanel(windows)] : []));
  const nFaces = ((current && current.readouts && current.readouts.faces) || []).length;
  $("readouts-summary").textContent =
    `${nFaces} face${nFaces === 1 ? "" : "s"} in the window on show; strips: the last ${windows.length} windows. ` +
    (hasVoice ? "" : "No sound: no voice readouts.");
}
