// The page itself: its elements by data-testid, the access token the page was opened
// with (added to every URL the page asks for), the colours of the stylesheet, canvases.

export const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const token = new URLSearchParams(location.search).get("token");
export const withToken = (url) => (token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url);

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
export const colors = () => ({
  pos: css("--pos"), neg: css("--neg"), neu: css("--neu"), grid: css("--line"), text: css("--muted"),
  line: css("--text"), accent: css("--accent"), bar: css("--accent"), barOff: css("--bar-off"),
  card: css("--card"), warn: css("--warn"), none: css("--none"),
});
export const polarityColor = (c, p) => (p === "positive" ? c.pos : p === "negative" ? c.neg : c.neu);

export function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth));
  const h = Math.max(1, Math.round(canvas.clientHeight));
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
}
