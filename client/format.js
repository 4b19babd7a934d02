// Scores, times and words as the page writes them.

export const fmtScore = (s) => {
  const r = Math.round(s * 100) / 100;
  return (r > 0 ? "+" : "") + (r === 0 ? "0.00" : r.toFixed(2));
};
export const fmtTime = (t) => {
  if (!Number.isFinite(t)) return "–";
  const m = Math.floor(t / 60);
  const s = t - m * 60;
  return `${m}:${s < 10 ? "0" : ""}${s.toFixed(1)}`;
};
export const wordKey = (w) => `${Number(w.start).toFixed(3)}|${w.w}`;
export const joinWords = (xs) => (xs.length <= 1 ? xs.join("") : `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}`);

// the words a window's score read: (first start, last end), or null
export function textSpan(w) {
  const ws = (w && w.words) || [];
  if (!ws.length) return null;
  let a = Infinity;
  let b = -Infinity;
  for (const x of ws) {
    a = Math.min(a, x.start);
    b = Math.max(b, x.end);
  }
  return [a, b];
}
