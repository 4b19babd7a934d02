// hcl-live dashboard: plain JS (ES modules), no dependencies, no build step.
// Talks the protocol of realtime/protocol.py over the websocket at /ws.
// This module wires the page: buttons, resizing, the stale check, the connection.

import { wireCapture } from "./capture-ui.js";
import { connect } from "./connection.js";
import { exportCsv } from "./export.js";
import { wireLabels } from "./labels.js";
import { handle } from "./messages.js";
import { wireOperator } from "./operator.js";
import { $ } from "./page.js";
import { checkStale, renderStatus } from "./panels.js";
import { renderAll } from "./render.js";
import { setReplayIndex, stopPlayTimerOnly, togglePlay, wireChartScrub, wireVideo } from "./replay.js";

function wireHelp() {
  const btn = $("help-toggle");
  const help = $("help");
  const set = (open) => {
    help.hidden = !open;
    btn.setAttribute("aria-expanded", String(open));
  };
  btn.addEventListener("click", () => set(help.hidden));
  if (location.hash === "#help") set(true);
}

function init() {
  $("export-csv").addEventListener("click", exportCsv);
  $("timeline").addEventListener("input", (ev) => {
    stopPlayTimerOnly();
    setReplayIndex(Number(ev.target.value));
  });
  $("play").addEventListener("click", togglePlay);
  wireChartScrub();
  wireVideo();
  wireHelp();
  wireCapture();
  wireOperator();
  wireLabels();
  const redraw = () => renderAll();
  if (window.ResizeObserver) {
    const ro = new ResizeObserver(redraw);
    for (const id of ["chart", "attention", "weights-text", "weights-audio", "weights-video"]) ro.observe($(id));
  } else {
    window.addEventListener("resize", redraw);
  }
  if (window.matchMedia) {
    const mq = window.matchMedia("(prefers-color-scheme: light)");
    if (mq.addEventListener) mq.addEventListener("change", redraw);
  }
  setInterval(checkStale, 500);
  renderAll();
  connect(handle, renderStatus);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
