// The words: kept once each, in time order (bounded), and the transcript card that
// shows the last words up to the window on show, its words highlighted. Provisional
// words (not committed yet: they may still change) are not kept; the window on show's
// provisional words are drawn after the committed ones, greyed and in italics.

import { wordKey } from "./format.js";
import { $ } from "./page.js";
import { state } from "./state.js";

const MAX_WORDS = 20000;
const TRANSCRIPT_WORDS = 90;   // words shown at once

export function addWords(words) {
  let added = false;
  let sorted = true;
  for (const w of words || []) {
    if (w.provisional) continue;
    const k = wordKey(w);
    if (state.wordKeys.has(k)) continue;
    const last = state.words[state.words.length - 1];
    if (last && last.start > w.start) sorted = false;
    state.wordKeys.add(k);
    state.words.push(w);
    added = true;
  }
  if (added) {
    if (!sorted) state.words.sort((a, b) => a.start - b.start);
    if (state.words.length > MAX_WORDS) {
      for (const w of state.words.splice(0, state.words.length - MAX_WORDS)) state.wordKeys.delete(wordKey(w));
    }
  }
}

export function renderTranscript() {
  const box = $("transcript");
  const w = state.current;
  const currentKeys = new Set((w && w.words ? w.words : []).map(wordKey));
  const until = w ? w.end : Infinity;
  // the last TRANSCRIPT_WORDS words before `until` (words are sorted by start)
  let hi = state.words.length;
  while (hi > 0 && !(state.words[hi - 1].start < until || currentKeys.has(wordKey(state.words[hi - 1])))) hi -= 1;
  const provisional = (w && w.words ? w.words : []).filter((x) => x.provisional && !state.wordKeys.has(wordKey(x)));
  const shown = state.words.slice(Math.max(0, hi - TRANSCRIPT_WORDS), hi).concat(provisional);
  box.replaceChildren();
  if (!shown.length) {
    const p = document.createElement("span");
    p.className = "empty";
    p.textContent = state.windows.length ? "no words yet" : "the transcript appears here";
    box.append(p);
    return;
  }
  let firstCurrent = null;
  for (const x of shown) {
    const span = document.createElement("span");
    span.className = x.provisional ? "word provisional" : "word";
    span.dataset.testid = "transcript-word";
    span.dataset.provisional = String(Boolean(x.provisional));
    if (x.provisional) span.title = "provisional: the speech recogniser may still change this word";
    span.dataset.start = String(x.start);
    const isCurrent = currentKeys.has(wordKey(x));
    span.dataset.current = String(isCurrent);
    span.textContent = x.w;
    if (isCurrent && !firstCurrent) firstCurrent = span;
    box.append(span, document.createTextNode(" "));
  }
  // drop the oldest lines until the rest fit: no line is cut at the top or bottom.
  // Whole lines go at once (one layout), so the lines after them wrap as before.
  const excess = box.scrollHeight - box.clientHeight;
  if (excess > 1) {
    const spans = box.querySelectorAll(".word");
    const top0 = spans[0].offsetTop;
    let keep = spans.length - 1;
    for (let i = 0; i < spans.length; i += 1) {
      if (spans[i].offsetTop - top0 >= excess - 1) { keep = i; break; }
    }
    if (firstCurrent) keep = Math.min(keep, [...spans].indexOf(firstCurrent));
    while (box.firstChild && box.firstChild !== spans[keep]) box.firstChild.remove();
  }
  // in case a line re-wrapped: the few remaining words, one at a time
  while (box.scrollHeight > box.clientHeight + 1 && box.childNodes.length > 2 && box.firstChild !== firstCurrent) {
    box.firstChild.remove(); // the word
    box.firstChild.remove(); // the space after it
  }
  box.scrollTop = 0;
}
