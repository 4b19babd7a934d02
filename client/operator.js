// The operator view (/operator, loopback or the token): every live and recently ended
// session with its lag, drops and CPU share, from GET /sessions every 2 s, and whether
// the server takes a new one now.

import { $, withToken } from "./page.js";

const COLUMNS = [
  ["session", (s) => s.id],
  ["kind", (s) => s.kind],
  ["state", (s) => (s.live ? "live" : `ended · ${s.end_reason || ""}`)],
  ["age", (s) => `${Math.round(s.age_s)} s`],
  ["windows", (s) => String(s.windows)],
  ["dropped", (s) => `${s.dropped_windows}${s.dropped_recent ? ` (+${s.dropped_recent} recently)` : ""}`],
  ["latency p95", (s) => (s.latency_ms && s.latency_ms.p95 != null ? `${Math.round(s.latency_ms.p95)} ms` : "–")],
  ["transcript lag p95", (s) => (s.transcript_lag_s && s.transcript_lag_s.p95 != null ? `${s.transcript_lag_s.p95.toFixed(1)} s` : "–")],
  ["CPU", (s) => (s.cpu_percent != null ? `${s.cpu_percent.toFixed(0)} % of a core` : "–")],
  ["faces / speech passes", (s) => `${s.face_fps != null ? `${s.face_fps} fps` : "–"} / ${s.speech_period_s != null ? `every ${s.speech_period_s} s` : "–"}`],
];

function render(body) {
  const table = $("operator-table");
  table.replaceChildren();
  const head = table.insertRow();
  for (const [name] of COLUMNS.concat([["link"]])) {
    const th = document.createElement("th");
    th.textContent = name;
    head.append(th);
  }
  for (const s of body.sessions || []) {
    const row = table.insertRow();
    row.dataset.session = s.id;
    for (const [, cell] of COLUMNS) row.insertCell().textContent = cell(s);
    const a = document.createElement("a");
    a.href = withToken(s.link);
    a.textContent = "open";
    row.insertCell().append(a);
  }
  $("operator-summary").textContent =
    `${body.live} of ${body.max_sessions} sessions live · ` +
    (body.admitting ? "taking new sessions" : `refusing new sessions: ${body.refusing_because}`) +
    (body.load && body.load.level ? ` · under load: level ${body.load.level} of ${body.load.levels - 1} (speech busy ${Math.round(100 * body.load.speech_busy)} %)` : "");
}

async function poll() {
  try {
    const resp = await fetch(withToken("/sessions"), { cache: "no-store" });
    if (!resp.ok) throw new Error(`${resp.status} ${await resp.text()}`);
    render(await resp.json());
  } catch (err) {
    $("operator-summary").textContent = `cannot read /sessions: ${err.message || err}`;
  }
}

// on /operator only: show the sessions table above the dashboard
export function wireOperator() {
  if (location.pathname !== "/operator") return;
  $("operator").hidden = false;
  poll();
  setInterval(poll, 2000);
}
