// What the model did in the window on show: the COWA group weights per modality and
// the guidance attention map.

import { $, colors, fitCanvas } from "./page.js";
import { ABSENT_TEXT, MODALITIES, scored, state } from "./state.js";

export function drawWeights() {
  const cur = state.current;
  const C = colors();
  const K = (state.hello && state.hello.clusters) || 8;
  $("weights-k").textContent = `cluster ${K}`;
  let max = 0;
  for (const m of MODALITIES) {
    if (!scored(m)) continue;
    for (const v of (cur && cur.weights && cur.weights[m]) || []) max = Math.max(max, v);
  }
  const parts = [];
  for (const m of MODALITIES) {
    const canvas = $(`weights-${m}`);
    const { ctx, w, h } = fitCanvas(canvas);
    const vals = (cur && cur.weights && cur.weights[m]) || [];
    const present = cur && cur.presence ? Boolean(cur.presence[m]) : false;
    const counts = present && scored(m);
    const n = vals.length || K;
    const slot = w / n;
    const barW = Math.max(2, slot * 0.72);
    const localMax = counts ? max : Math.max(0, ...vals);
    ctx.fillStyle = C.grid;
    ctx.fillRect(0, h - 1, w, 1);
    for (let i = 0; i < n; i += 1) {
      const v = vals[i] || 0;
      const bh = localMax > 0 ? Math.max(1, (v / localMax) * (h - 4)) : 1;
      ctx.fillStyle = counts ? C.bar : C.barOff;
      ctx.fillRect(i * slot + (slot - barW) / 2, h - 1 - bh, barW, bh);
    }
    const note = !cur ? "" : !scored(m) ? "not scored" : !present ? ABSENT_TEXT[m] : !vals.length ? "no weights" : "";
    canvas.dataset.note = note;
    if (note) {
      ctx.font = "600 12px system-ui, sans-serif";
      const tw = ctx.measureText(note).width + 12;
      ctx.fillStyle = C.card;
      ctx.globalAlpha = 0.88;
      ctx.fillRect(w - tw - 2, 2, tw, 18);
      ctx.globalAlpha = 1;
      ctx.fillStyle = C.warn;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(note, w - 2 - tw / 2, 11);
    }
    if (!cur) continue;
    if (!scored(m)) parts.push(`${m}: not scored by this model`);
    else if (!present || !vals.length) parts.push(`${m}: ${note}`);
    else {
      let top = 0;
      vals.forEach((v, i) => { if (v > vals[top]) top = i; });
      parts.push(`${m}: cluster ${top + 1} weighs most (${vals[top].toFixed(2)})`);
    }
  }
  $("weights-summary").textContent = cur ? `${parts.join("; ")}.` : "No weights yet.";
}

// a perceptually ordered dark-blue -> teal -> yellow ramp (viridis-like); style.css .ramp matches
const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function rampColor(v) {
  const x = Math.max(0, Math.min(1, v)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  const c = RAMP[i].map((a, k) => Math.round(a + (RAMP[i + 1][k] - a) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

export function drawAttention() {
  const canvas = $("attention");
  const C = colors();
  const { ctx, w, h } = fitCanvas(canvas);
  const att = state.current && state.current.attention;
  const used = scored("video") && scored("text");
  const summary = $("attention-summary");
  ctx.font = "11px system-ui, sans-serif";
  if (!att || !att.length) {
    ctx.fillStyle = C.text;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(state.current ? "no attention map in this window" : "", w / 2, h / 2);
    canvas.dataset.size = "0";
    summary.textContent = used ? "No attention map yet." : "Not used: this model does not score video, so the map carries no meaning.";
    return;
  }
  const T = att.length;
  canvas.dataset.size = String(T);
  const lab = 16;
  const side = Math.max(8, Math.min(w - lab, h - lab));
  const cell = side / T;
  const ox = lab + (w - lab - side) / 2;
  const oy = lab;
  let max = 0;
  let best = [0, 0];
  att.forEach((row, r) => row.forEach((v, c) => {
    if (v > max) { max = v; best = [r, c]; }
  }));
  for (let r = 0; r < T; r += 1) {
    for (let c = 0; c < T; c += 1) {
      ctx.fillStyle = used ? rampColor(max > 0 ? att[r][c] / max : 0) : C.barOff;
      ctx.fillRect(ox + c * cell, oy + r * cell, Math.ceil(cell), Math.ceil(cell));
    }
  }
  ctx.fillStyle = C.text;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  for (let i = 0; i < T; i += 1) {
    if (T > 12 && i % 2) continue;
    ctx.fillText(String(i + 1), ox + (i + 0.5) * cell, oy - 8);
    ctx.fillText(String(i + 1), ox - 9, oy + (i + 0.5) * cell);
  }
  if (!used) {
    const note = "not used: the model does not score video";
    ctx.font = "600 12px system-ui, sans-serif";
    const tw = Math.min(w - 4, ctx.measureText(note).width + 12);
    ctx.fillStyle = C.card;
    ctx.fillRect((w - tw) / 2, h / 2 - 11, tw, 22);
    ctx.fillStyle = C.warn;
    ctx.fillText(note, w / 2, h / 2, w - 8);
    summary.textContent = "Not used: this model does not score video, so the map carries no meaning.";
    return;
  }
  summary.textContent = `${T}×${T} map; strongest: text step ${best[0] + 1} looks at video step ${best[1] + 1} (${max.toFixed(2)}).`;
}
