// The score-over-time chart: the windows it shows (live: the last LIVE_SPAN_S
// seconds; replay: all), their geometry (also used to scrub), its text summary.

import { fmtScore, fmtTime } from "./format.js";
import { $, colors, fitCanvas, polarityColor } from "./page.js";
import { state } from "./state.js";

const LIVE_SPAN_S = 120;       // seconds of history the live chart shows (the export has all)

export function visibleWindows() {
  const ws = state.windows;
  if (state.mode === "replay" || !ws.length) return ws;
  const lastEnd = ws[ws.length - 1].end;
  let i = ws.length;
  while (i > 0 && ws[i - 1].end >= lastEnd - LIVE_SPAN_S) i -= 1;
  return ws.slice(i);
}

export function chartGeometry(w, h, vis) {
  const narrow = w < 480;
  const pad = { l: 34, r: narrow ? 12 : 74, t: 10, b: 24 };
  let x0 = vis.length ? vis[0].end : 0;
  let x1 = vis.length ? vis[vis.length - 1].end : 10;
  if (state.mode === "live") x0 = Math.max(vis.length ? vis[0].end : 0, x1 - LIVE_SPAN_S);
  if (x1 - x0 < 10) x1 = x0 + 10;
  const X = (t) => pad.l + ((t - x0) / (x1 - x0)) * (w - pad.l - pad.r);
  const Y = (s) => pad.t + ((3 - s) / 6) * (h - pad.t - pad.b);
  return { pad, x0, x1, X, Y, narrow };
}

function summarize(vis) {
  if (!vis.length) return state.mode === "replay" ? "The recorded session has no windows." : "No scores yet.";
  let sum = 0;
  let lo = vis[0];
  let hi = vis[0];
  for (const w of vis) {
    sum += w.score;
    if (w.score < lo.score) lo = w;
    if (w.score > hi.score) hi = w;
  }
  const span = `${fmtTime(vis[0].end)} to ${fmtTime(vis[vis.length - 1].end)}`;
  const cur = state.current;
  return `${vis.length} windows from ${span}: mean ${fmtScore(sum / vis.length)}, lowest ${fmtScore(lo.score)} at ${fmtTime(lo.end)}, ` +
    `highest ${fmtScore(hi.score)} at ${fmtTime(hi.end)}` + (cur ? `; on show ${fmtScore(cur.score)} (${cur.label}) at ${fmtTime(cur.end)}.` : ".");
}

export function drawChart() {
  const canvas = $("chart");
  const vis = visibleWindows();
  const C = colors();
  canvas.dataset.count = String(vis.length);
  $("chart-summary").textContent = summarize(vis);
  const { ctx, w, h } = fitCanvas(canvas);
  const g = chartGeometry(w, h, vis);
  const { pad, X, Y } = g;
  const right = w - pad.r;
  // bands: negative / neutral / positive (class7 rounding: |score| < 0.5 is neutral)
  const bands = [[3, 0.5, C.pos, "positive"], [0.5, -0.5, C.neu, "neutral"], [-0.5, -3, C.neg, "negative"]];
  ctx.font = "12px system-ui, sans-serif";
  for (const [top, bottom, color, name] of bands) {
    ctx.globalAlpha = 0.1;
    ctx.fillStyle = color;
    ctx.fillRect(pad.l, Y(top), right - pad.l, Y(bottom) - Y(top));
    ctx.globalAlpha = 1;
    if (!g.narrow) {
      ctx.textAlign = "left";
      ctx.textBaseline = "middle";
      ctx.fillText(name, right + 8, (Y(top) + Y(bottom)) / 2);
    }
  }
  // horizontal grid at integer scores
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let s = -3; s <= 3; s += 1) {
    ctx.strokeStyle = s === 0 ? C.none : C.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(pad.l, Math.round(Y(s)) + 0.5);
    ctx.lineTo(right, Math.round(Y(s)) + 0.5);
    ctx.stroke();
    ctx.fillStyle = C.text;
    ctx.fillText(s > 0 ? `+${s}` : String(s), pad.l - 6, Y(s));
  }
  // time ticks
  const span = g.x1 - g.x0;
  const stepChoices = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800];
  const maxTicks = g.narrow ? 4 : 8;
  const tick = stepChoices.find((s) => span / s <= maxTicks) || 3600;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let t = Math.ceil(g.x0 / tick) * tick; t <= g.x1 + 1e-9; t += tick) {
    ctx.strokeStyle = C.grid;
    ctx.beginPath();
    ctx.moveTo(Math.round(X(t)) + 0.5, pad.t);
    ctx.lineTo(Math.round(X(t)) + 0.5, h - pad.b);
    ctx.stroke();
    ctx.fillStyle = C.text;
    ctx.fillText(fmtTime(t).replace(/\.0$/, ""), X(t), h - pad.b + 6);
  }
  if (!vis.length) {
    ctx.fillStyle = C.text;
    ctx.textBaseline = "middle";
    ctx.font = "16px system-ui, sans-serif";
    const st = state.status && state.status.state;
    ctx.fillText(state.mode === "replay" ? "empty session" : st === "loading" ? "loading models…" : "waiting for scores…",
      (pad.l + right) / 2, h / 2);
    return;
  }
  // score line, broken where windows are missing
  const gap = Math.max(3 * state.stepSeconds, 2);
  ctx.strokeStyle = C.line;
  ctx.lineWidth = 2.5;
  ctx.lineJoin = "round";
  ctx.beginPath();
  vis.forEach((win, i) => {
    const x = X(win.end);
    const y = Y(Math.max(-3, Math.min(3, win.score)));
    if (i === 0 || win.end - vis[i - 1].end > gap) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
  const dot = vis.length > 200 ? 0 : 3;
  if (dot) {
    for (const win of vis) {
      ctx.beginPath();
      ctx.arc(X(win.end), Y(Math.max(-3, Math.min(3, win.score))), dot, 0, Math.PI * 2);
      if (win.provisional) {  // scored on provisional words: a hollow point
        ctx.strokeStyle = polarityColor(C, win.polarity);
        ctx.lineWidth = 1.5;
        ctx.stroke();
      } else {
        ctx.fillStyle = polarityColor(C, win.polarity);
        ctx.fill();
      }
    }
  }
  const cur = state.current;
  canvas.dataset.provisional = String(vis.filter((w) => w.provisional).length);
  if (cur) {
    const x = X(cur.end);
    const y = Y(Math.max(-3, Math.min(3, cur.score)));
    if (state.mode === "replay") {
      ctx.strokeStyle = C.accent;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x, pad.t);
      ctx.lineTo(x, h - pad.b);
      ctx.stroke();
    }
    // the window on show; hollow while its score reads provisional words
    ctx.fillStyle = cur.provisional ? C.card : polarityColor(C, cur.polarity);
    ctx.strokeStyle = cur.provisional ? polarityColor(C, cur.polarity) : C.card;
    ctx.lineWidth = 3;
    ctx.beginPath();
    ctx.arc(x, y, 8, 0, Math.PI * 2);
    ctx.fill();
    ctx.stroke();
  }
}
