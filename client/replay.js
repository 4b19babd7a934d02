// Replaying a recorded session: the position (timeline, chart scrubbing), playing,
// and the recorded video kept in step with the chart.

import { chartGeometry, visibleWindows } from "./chart.js";
import { fmtTime } from "./format.js";
import { $, withToken } from "./page.js";
import { renderAll } from "./render.js";
import { state } from "./state.js";

const VIDEO_SYNC_S = 0.3;      // video and chart closer than this are in sync

const video = () => $("replay-video");
const hasVideo = () => Boolean(state.mode === "replay" && state.hello && state.hello.recording && state.hello.recording.video);

export function setupVideo() {
  const v = video();
  const show = hasVideo();
  $("video-card").hidden = !show;
  $("grid").classList.toggle("has-video", show);
  if (!show) {
    if (v.getAttribute("src")) {
      v.removeAttribute("src");
      v.load();
    }
    return;
  }
  const src = withToken(state.hello.recording.video);
  if (v.getAttribute("src") !== src) v.src = src;
}

// the window on show for a time on the session clock: the last that ended by then
function indexAt(t) {
  const ws = state.windows;
  let lo = 0;
  let hi = ws.length - 1;
  if (hi < 0 || t <= ws[0].end) return 0;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ws[mid].end <= t + 1e-6) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export function setReplayIndex(i, { fromVideo = false } = {}) {
  const n = state.windows.length;
  state.replayIndex = Math.max(0, Math.min(n - 1, i | 0));
  state.current = n ? state.windows[state.replayIndex] : null;
  $("timeline").value = String(state.replayIndex);
  const last = n ? state.windows[n - 1] : null;
  $("timeline-pos").textContent = state.current
    ? `${fmtTime(state.current.end)} / ${fmtTime(last.end)} · ${state.replayIndex + 1}/${n}`
    : "empty session";
  const v = video();
  if (!fromVideo && hasVideo() && state.current && Math.abs(v.currentTime - state.current.end) > VIDEO_SYNC_S) {
    v.currentTime = state.current.end; // the chart moved: the video follows
  }
  renderAll();
}

function onVideoTime() {
  if (!hasVideo() || !state.windows.length) return;
  const i = indexAt(video().currentTime);
  if (i !== state.replayIndex) setReplayIndex(i, { fromVideo: true });
}

export function stopPlay() {
  clearInterval(state.playTimer);
  state.playTimer = null;
  const btn = $("play");
  if (btn) btn.textContent = "▶ play";
  const v = video();
  if (v && !v.paused) v.pause();
}

export function togglePlay() {
  if (hasVideo()) {
    const v = video();
    if (v.paused) {
      if (state.replayIndex >= state.windows.length - 1) setReplayIndex(0);
      v.play().catch(() => undefined);
    } else {
      v.pause();
    }
    return undefined;
  }
  if (state.playTimer) return stopPlay();
  if (state.replayIndex >= state.windows.length - 1) setReplayIndex(0);
  $("play").textContent = "❚❚ pause";
  state.playTimer = setInterval(() => {
    if (state.replayIndex >= state.windows.length - 1) return stopPlay();
    setReplayIndex(state.replayIndex + 1);
  }, Math.max(50, state.stepSeconds * 1000));
  return undefined;
}

function scrubToX(clientX) {
  if (state.mode !== "replay" || !state.windows.length) return;
  const canvas = $("chart");
  const rect = canvas.getBoundingClientRect();
  const g = chartGeometry(rect.width, rect.height, visibleWindows());
  const frac = (clientX - rect.left - g.pad.l) / (rect.width - g.pad.l - g.pad.r);
  const t = g.x0 + Math.max(0, Math.min(1, frac)) * (g.x1 - g.x0);
  let best = 0;
  state.windows.forEach((w, i) => {
    if (Math.abs(w.end - t) < Math.abs(state.windows[best].end - t)) best = i;
  });
  if (best !== state.replayIndex) setReplayIndex(best);
}

export function wireChartScrub() {
  const chart = $("chart");
  let dragging = false;
  chart.addEventListener("pointerdown", (ev) => {
    if (state.mode !== "replay") return;
    dragging = true;
    stopPlayTimerOnly();
    try { chart.setPointerCapture(ev.pointerId); } catch (err) { /* synthetic pointers */ }
    scrubToX(ev.clientX);
  });
  chart.addEventListener("pointermove", (ev) => {
    if (dragging) scrubToX(ev.clientX);
  });
  const end = () => { dragging = false; };
  chart.addEventListener("pointerup", end);
  chart.addEventListener("pointercancel", end);
}

export function stopPlayTimerOnly() {
  if (state.playTimer) stopPlay();
}

export function wireVideo() {
  const v = video();
  v.addEventListener("timeupdate", onVideoTime);
  v.addEventListener("seeked", onVideoTime);
  v.addEventListener("play", () => { $("play").textContent = "❚❚ pause"; });
  v.addEventListener("pause", () => { $("play").textContent = "▶ play"; });
}
