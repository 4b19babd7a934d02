// Export CSV: the whole session from the recording when there is one, else the
// windows this page holds.

import { textSpan } from "./format.js";
import { withToken } from "./page.js";
import { state } from "./state.js";

// the same columns as realtime/protocol.py CSV_COLUMNS (GET /recording/scores.csv)
const FACE_COLUMNS = ["smile", "frown", "brow_lowered", "brow_raised", "eyes_widened", "jaw_open", "head_movement"];
const VOICE_COLUMNS = ["loudness_dbfs", "pitch_hz", "pitch_variability_st", "voiced_fraction", "speaking_rate",
  "pauses", "pause_seconds"];
const READOUT_COLUMNS = ["faces", "speaker_face_id", ...FACE_COLUMNS.map((k) => `speaker_${k}`), ...VOICE_COLUMNS,
  "faces_json"];
const CSV_COLUMNS = ["session", "seq", "start", "end", "text_start", "text_end", "score", "class7", "label",
  "polarity", "text", "audio", "video", "words", ...READOUT_COLUMNS];

// the readouts' cells (protocol.readout_cells): empty without readouts
function readoutCells(w) {
  const r = w.readouts;
  if (!r) return READOUT_COLUMNS.map(() => "");
  const faces = r.faces || [];
  const speaker = faces.find((f) => f.speaker) || null;
  const voice = r.voice || {};
  const cell = (v) => (v === null || v === undefined ? "" : v);
  return [
    faces.length, speaker ? speaker.face_id : "",
    ...FACE_COLUMNS.map((k) => (speaker ? cell(speaker[k]) : "")),
    ...VOICE_COLUMNS.map((k) => cell(voice[k])),
    faces.length ? JSON.stringify(faces) : "",
  ];
}

function csvCell(v) {
  const s = String(v === null || v === undefined ? "" : v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function csvRow(w) {
  const p = w.presence || {};
  const span = textSpan(w);
  return [
    w.session, w.seq, w.start, w.end, span ? span[0] : "", span ? span[1] : "", w.score, w.class7, w.label, w.polarity,
    p.text ? 1 : 0, p.audio ? 1 : 0, p.video ? 1 : 0, (w.words || []).map((x) => x.w).join(" "),
    ...readoutCells(w),
  ];
}

function download(href, name) {
  const a = document.createElement("a");
  a.href = href;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

export function exportCsv() {
  const name = `hcl-${(state.session || "session").replace(/[^\w.-]+/g, "_")}-scores.csv`;
  const rec = state.hello && state.hello.recording;
  if (rec && rec.csv) {
    // the whole session, from the recording on disk
    download(withToken(rec.csv), name);
    return;
  }
  const rows = [CSV_COLUMNS];
  for (const w of state.windows) rows.push(csvRow(w));
  const blob = new Blob([rows.map((r) => r.map(csvCell).join(",")).join("\n") + "\n"], { type: "text/csv" });
  const url = URL.createObjectURL(blob);
  download(url, name);
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
