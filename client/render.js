// Drawing the whole page, at most once per frame.

import { drawChart } from "./chart.js";
import { drawAttention, drawWeights } from "./details.js";
import { renderHealth, renderNow } from "./panels.js";
import { renderReadouts } from "./readouts.js";
import { renderTranscript } from "./transcript.js";

// everything is drawn once per frame, however many messages came (a late tab gets
// up to an hour of history at once)
let frameRequested = false;
export function renderAll() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(() => {
    frameRequested = false;
    renderNow();
    renderHealth();
    renderTranscript();
    drawChart();
    drawWeights();
    drawAttention();
    renderReadouts();
  });
}
