// hcl-live dashboard: plain JS, no dependencies, no build step.
// Talks the protocol of realtime/protocol.py over the websocket at /ws.
"use strict";

(() => {
  const MODALITIES = ["text", "audio", "video"];
  const PRESENT_TEXT = { text: "words", audio: "speech", video: "face" };
  const ABSENT_TEXT = { text: "no words", audio: "silence", video: "no face" };
  const LIVE_SPAN_S = 120;       // seconds of history the live chart shows
  const MAX_WINDOWS = 20000;     // kept in memory (about 3 h at 2 windows/s)
  const MAX_WORDS = 20000;
  const TRANSCRIPT_WORDS = 90;   // words shown at once
  const BACKOFF_START_MS = 500;
  const BACKOFF_CAP_MS = 8000;
  const COLORS = {
    pos: "#3fd68a", neg: "#ff6b6b", neu: "#c7d0db", grid: "#263040", text: "#8b98a9",
    line: "#e8eef5", accent: "#6cb6ff", bar: "#6cb6ff", barOff: "#3a4452",
  };

  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

  const state = {
    hello: null,
    mode: "live",
    session: null,
    stepSeconds: 0.5,
    windows: [],          // sorted by seq
    seqs: new Set(),
    words: [],            // sorted by start
    wordKeys: new Set(),
    current: null,        // the window on show
    lastWindowAt: 0,      // performance.now() when the newest live window came
    stats: null,
    replayIndex: 0,
    playTimer: null,
  };

  // ------------------------------------------------------------------ formatting
  const fmtScore = (s) => {
    const r = Math.round(s * 100) / 100;
    return (r > 0 ? "+" : "") + (r === 0 ? "0.00" : r.toFixed(2));
  };
  const fmtTime = (t) => {
    if (!Number.isFinite(t)) return "–";
    const m = Math.floor(t / 60);
    const s = t - m * 60;
    return `${m}:${s < 10 ? "0" : ""}${s.toFixed(1)}`;
  };
  const wordKey = (w) => `${Number(w.start).toFixed(3)}|${w.w}`;
  const polarityColor = (p) => (p === "positive" ? COLORS.pos : p === "negative" ? COLORS.neg : COLORS.neu);

  // ------------------------------------------------------------------ connection
  const conn = { ws: null, attempt: 0, timer: null };

  function wsUrl() {
    const token = new URLSearchParams(location.search).get("token");
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    return `${proto}//${location.host}/ws` + (token ? `?token=${encodeURIComponent(token)}` : "");
  }

  function setConn(kind, text) {
    const el = $("connection");
    el.dataset.state = kind;
    el.querySelector(".conn-text").textContent = text;
  }

  function connect() {
    clearTimeout(conn.timer);
    setConn("connecting", conn.attempt ? `reconnecting (try ${conn.attempt + 1})…` : "connecting…");
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (err) {
      scheduleReconnect();
      return;
    }
    conn.ws = ws;
    ws.onopen = () => {
      conn.attempt = 0;
      setConn("open", "connected");
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        return;
      }
      handle(msg);
    };
    ws.onclose = () => {
      if (conn.ws === ws) conn.ws = null;
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    const base = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * 2 ** conn.attempt);
    const delay = base * (0.8 + Math.random() * 0.4);
    conn.attempt += 1;
    setConn("closed", `disconnected · retry in ${(delay / 1000).toFixed(1)} s`);
    clearTimeout(conn.timer);
    conn.timer = setTimeout(connect, delay);
  }

  // ------------------------------------------------------------------ messages
  function handle(msg) {
    switch (msg.type) {
      case "hello": return onHello(msg);
      case "window": return onWindow(msg);
      case "session": return onSession(msg);
      case "stats": return onStats(msg);
      case "error": return console.warn("server says:", msg.message);
      default: return undefined;
    }
  }

  function resetData() {
    state.windows = [];
    state.seqs = new Set();
    state.words = [];
    state.wordKeys = new Set();
    state.current = null;
    stopPlay();
  }

  function onHello(msg) {
    if (state.session !== msg.session || state.mode !== msg.mode) resetData();
    state.hello = msg;
    state.session = msg.session;
    state.mode = msg.mode === "replay" ? "replay" : "live";
    state.stepSeconds = (msg.settings && msg.settings.step_seconds) || 0.5;
    $("session-id").textContent = msg.session || "";
    const badge = $("mode");
    badge.dataset.mode = state.mode;
    badge.textContent = state.mode === "replay" ? "REPLAY" : "LIVE";
    const model = msg.model || {};
    $("model").textContent = model.name ? `${model.name}${model.version ? " " + model.version : ""}` : "";
    $("replay-controls").hidden = state.mode !== "replay";
    $("chart").classList.toggle("scrubbable", state.mode === "replay");
    renderAll();
  }

  function addWords(words) {
    let added = false;
    for (const w of words || []) {
      const k = wordKey(w);
      if (state.wordKeys.has(k)) continue;
      state.wordKeys.add(k);
      state.words.push(w);
      added = true;
    }
    if (added) {
      state.words.sort((a, b) => a.start - b.start);
      if (state.words.length > MAX_WORDS) {
        for (const w of state.words.splice(0, state.words.length - MAX_WORDS)) state.wordKeys.delete(wordKey(w));
      }
    }
  }

  function onWindow(msg) {
    if (state.mode === "replay") return;
    if (state.seqs.has(msg.seq)) return;
    state.seqs.add(msg.seq);
    const ws = state.windows;
    if (!ws.length || ws[ws.length - 1].seq < msg.seq) {
      ws.push(msg);
    } else {
      let i = ws.length;
      while (i > 0 && ws[i - 1].seq > msg.seq) i -= 1;
      ws.splice(i, 0, msg);
    }
    if (ws.length > MAX_WINDOWS) {
      for (const old of ws.splice(0, ws.length - MAX_WINDOWS)) state.seqs.delete(old.seq);
    }
    addWords(msg.words);
    if (!state.current || msg.seq >= state.current.seq) state.current = msg;
    state.lastWindowAt = performance.now();
    renderAll();
  }

  function onSession(msg) {
    // the same session again (a reconnect): stay where the person was scrubbing
    const keep = state.windows.length && state.windows[0].session === msg.session ? state.replayIndex : 0;
    resetData();
    state.windows = (msg.windows || []).slice().sort((a, b) => a.seq - b.seq);
    state.seqs = new Set(state.windows.map((w) => w.seq));
    addWords(msg.words);
    for (const w of state.windows) addWords(w.words);
    const slider = $("timeline");
    slider.max = String(Math.max(0, state.windows.length - 1));
    setReplayIndex(keep);
  }

  function onStats(msg) {
    state.stats = msg;
    renderHealth();
  }

  // ------------------------------------------------------------------ replay
  function setReplayIndex(i) {
    const n = state.windows.length;
    state.replayIndex = Math.max(0, Math.min(n - 1, i | 0));
    state.current = n ? state.windows[state.replayIndex] : null;
    $("timeline").value = String(state.replayIndex);
    const last = n ? state.windows[n - 1] : null;
    $("timeline-pos").textContent = state.current
      ? `${fmtTime(state.current.end)} / ${fmtTime(last.end)} · ${state.replayIndex + 1}/${n}`
      : "empty session";
    renderAll();
  }

  function stopPlay() {
    clearInterval(state.playTimer);
    state.playTimer = null;
    const btn = $("play");
    if (btn) btn.textContent = "▶ play";
  }

  function togglePlay() {
    if (state.playTimer) return stopPlay();
    if (state.replayIndex >= state.windows.length - 1) setReplayIndex(0);
    $("play").textContent = "❚❚ pause";
    state.playTimer = setInterval(() => {
      if (state.replayIndex >= state.windows.length - 1) return stopPlay();
      setReplayIndex(state.replayIndex + 1);
    }, Math.max(50, state.stepSeconds * 1000));
    return undefined;
  }

  // ------------------------------------------------------------------ rendering
  let frameRequested = false;
  function renderAll() {
    renderNow();
    renderTranscript();
    renderHealth();
    if (!frameRequested) {
      frameRequested = true;
      requestAnimationFrame(() => {
        frameRequested = false;
        drawChart();
        drawWeights();
        drawAttention();
      });
    }
  }

  function renderNow() {
    const w = state.current;
    const score = $("score");
    const label = $("label");
    if (!w) {
      score.textContent = "–";
      score.dataset.seq = "";
      score.dataset.polarity = "none";
      label.textContent = state.mode === "replay" ? "no windows in this session" : "waiting for the first window";
      $("window-time").textContent = "\u00a0";
      for (const m of MODALITIES) setModality(m, null);
      return;
    }
    score.textContent = fmtScore(w.score);
    score.dataset.value = String(w.score);
    score.dataset.seq = String(w.seq);
    score.dataset.polarity = w.polarity;
    label.textContent = w.label;
    $("window-time").textContent = `window ${fmtTime(w.start)}–${fmtTime(w.end)} · #${w.seq}`;
    for (const m of MODALITIES) setModality(m, w.presence ? Boolean(w.presence[m]) : null);
  }

  // modalities the model scores (hello.model.inputs); others are shown but marked "not scored"
  function scored(m) {
    const inputs = state.hello && state.hello.model && state.hello.model.inputs;
    return !Array.isArray(inputs) || inputs.includes(m);
  }

  function setModality(m, present) {
    const el = $(`modality-${m}`);
    el.dataset.present = present === null ? "unknown" : String(present);
    el.dataset.scored = String(scored(m));
    el.title = scored(m) ? "" : "the model was not trained on this modality: it is shown but not scored";
    const state_ = present === null ? "–" : present ? PRESENT_TEXT[m] : ABSENT_TEXT[m];
    el.querySelector(".m-state").textContent = scored(m) ? state_ : `${state_} · not scored`;
  }

  function renderTranscript() {
    const box = $("transcript");
    const w = state.current;
    const currentKeys = new Set((w && w.words ? w.words : []).map(wordKey));
    const until = w ? w.end : Infinity;
    let shown = state.words.filter((x) => x.start < until || currentKeys.has(wordKey(x)));
    shown = shown.slice(-TRANSCRIPT_WORDS);
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
      span.className = "word";
      span.dataset.testid = "transcript-word";
      span.dataset.start = String(x.start);
      const isCurrent = currentKeys.has(wordKey(x));
      span.dataset.current = String(isCurrent);
      span.textContent = x.w;
      if (isCurrent && !firstCurrent) firstCurrent = span;
      box.append(span, document.createTextNode(" "));
    }
    if (state.mode === "replay" && firstCurrent) {
      firstCurrent.scrollIntoView({ block: "nearest" });
    } else {
      box.scrollTop = box.scrollHeight;
    }
  }

  function renderHealth() {
    const st = state.stats;
    const lat = st && st.latency_ms ? st.latency_ms.total || st.latency_ms.server_send : null;
    $("latency").textContent =
      lat && lat.p50 !== null && lat.p50 !== undefined ? `p50 ${Math.round(lat.p50)} · p95 ${Math.round(lat.p95)} ms` : "–";
    const fromWindow = state.current && state.mode === "live" ? state.current.dropped || 0 : 0;
    const pipeline = Math.max(fromWindow, st ? Number(st.dropped_windows) || 0 : 0);
    const clientDrops = st ? Number(st.client_drops) || 0 : 0;
    const el = $("dropped");
    el.textContent = clientDrops ? `${pipeline} (+${clientDrops} to slow screens)` : String(pipeline);
    el.title = `${pipeline} windows skipped by the pipeline; ${clientDrops} messages dropped for slow dashboards`;
  }

  function checkStale() {
    const now = $("score").closest(".now");
    const stale = $("stale");
    const live = state.mode === "live" && state.current && conn.ws && conn.ws.readyState === WebSocket.OPEN;
    const age = (performance.now() - state.lastWindowAt) / 1000;
    const isStale = Boolean(live && age > Math.max(3, 4 * state.stepSeconds));
    stale.hidden = !isStale;
    if (isStale) stale.textContent = `no new window for ${Math.floor(age)} s`;
    now.classList.toggle("is-stale", isStale || Boolean(state.current && state.mode === "live" && !live));
  }

  // ------------------------------------------------------------------ canvases
  function fitCanvas(canvas) {
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

  function visibleWindows() {
    const ws = state.windows;
    if (state.mode === "replay" || !ws.length) return ws;
    const lastEnd = ws[ws.length - 1].end;
    return ws.filter((w) => w.end >= lastEnd - LIVE_SPAN_S);
  }

  function chartGeometry(w, h, vis) {
    const pad = { l: 44, r: 78, t: 10, b: 26 };
    let x0 = vis.length ? vis[0].end : 0;
    let x1 = vis.length ? vis[vis.length - 1].end : 10;
    if (state.mode === "live") x0 = Math.max(vis.length ? vis[0].end : 0, x1 - LIVE_SPAN_S);
    if (x1 - x0 < 10) x1 = x0 + 10;
    const X = (t) => pad.l + ((t - x0) / (x1 - x0)) * (w - pad.l - pad.r);
    const Y = (s) => pad.t + ((3 - s) / 6) * (h - pad.t - pad.b);
    return { pad, x0, x1, X, Y };
  }

  function drawChart() {
    const canvas = $("chart");
    const vis = visibleWindows();
    canvas.dataset.count = String(vis.length);
    const { ctx, w, h } = fitCanvas(canvas);
    const g = chartGeometry(w, h, vis);
    const { pad, X, Y } = g;
    const right = w - pad.r;
    // bands: negative / neutral / positive (class7 rounding: |score| < 0.5 is neutral)
    const bands = [
      [3, 0.5, "rgba(63,214,138,0.10)", "positive", COLORS.pos],
      [0.5, -0.5, "rgba(199,208,219,0.07)", "neutral", COLORS.neu],
      [-0.5, -3, "rgba(255,107,107,0.10)", "negative", COLORS.neg],
    ];
    ctx.font = "12px system-ui, sans-serif";
    for (const [top, bottom, fill, name, color] of bands) {
      ctx.fillStyle = fill;
      ctx.fillRect(pad.l, Y(top), right - pad.l, Y(bottom) - Y(top));
      ctx.fillStyle = color;
      ctx.textAlign = "left";
      ctx.textBaseline = "middle";
      ctx.fillText(name, right + 8, (Y(top) + Y(bottom)) / 2);
    }
    // horizontal grid at integer scores
    ctx.textAlign = "right";
    for (let s = -3; s <= 3; s += 1) {
      ctx.strokeStyle = s === 0 ? "#3b4658" : COLORS.grid;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(pad.l, Math.round(Y(s)) + 0.5);
      ctx.lineTo(right, Math.round(Y(s)) + 0.5);
      ctx.stroke();
      ctx.fillStyle = COLORS.text;
      ctx.fillText(s > 0 ? `+${s}` : String(s), pad.l - 8, Y(s));
    }
    // time ticks
    const span = g.x1 - g.x0;
    const stepChoices = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800];
    const tick = stepChoices.find((s) => span / s <= 8) || 3600;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let t = Math.ceil(g.x0 / tick) * tick; t <= g.x1 + 1e-9; t += tick) {
      ctx.strokeStyle = COLORS.grid;
      ctx.beginPath();
      ctx.moveTo(Math.round(X(t)) + 0.5, pad.t);
      ctx.lineTo(Math.round(X(t)) + 0.5, h - pad.b);
      ctx.stroke();
      ctx.fillStyle = COLORS.text;
      ctx.fillText(fmtTime(t).replace(/\.0$/, ""), X(t), h - pad.b + 6);
    }
    if (!vis.length) {
      ctx.fillStyle = COLORS.text;
      ctx.textBaseline = "middle";
      ctx.font = "16px system-ui, sans-serif";
      ctx.fillText(state.mode === "replay" ? "empty session" : "waiting for scores…", (pad.l + right) / 2, h / 2);
      return;
    }
    // score line, broken where windows are missing
    const gap = Math.max(3 * state.stepSeconds, 2);
    ctx.strokeStyle = COLORS.line;
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
        ctx.fillStyle = polarityColor(win.polarity);
        ctx.beginPath();
        ctx.arc(X(win.end), Y(Math.max(-3, Math.min(3, win.score))), dot, 0, Math.PI * 2);
        ctx.fill();
      }
    }
    const cur = state.current;
    if (cur) {
      const x = X(cur.end);
      const y = Y(Math.max(-3, Math.min(3, cur.score)));
      if (state.mode === "replay") {
        ctx.strokeStyle = COLORS.accent;
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.moveTo(x, pad.t);
        ctx.lineTo(x, h - pad.b);
        ctx.stroke();
      }
      ctx.fillStyle = polarityColor(cur.polarity);
      ctx.strokeStyle = "#0b0f14";
      ctx.lineWidth = 3;
      ctx.beginPath();
      ctx.arc(x, y, 8, 0, Math.PI * 2);
      ctx.fill();
      ctx.stroke();
    }
  }

  function drawWeights() {
    const cur = state.current;
    const K = (state.hello && state.hello.clusters) || 8;
    let max = 0;
    for (const m of MODALITIES) {
      for (const v of (cur && cur.weights && cur.weights[m]) || []) max = Math.max(max, v);
    }
    for (const m of MODALITIES) {
      const canvas = $(`weights-${m}`);
      const { ctx, w, h } = fitCanvas(canvas);
      const vals = (cur && cur.weights && cur.weights[m]) || [];
      const present = cur && cur.presence ? Boolean(cur.presence[m]) : false;
      const n = vals.length || K;
      const slot = w / n;
      const barW = Math.max(2, slot * 0.72);
      ctx.fillStyle = COLORS.grid;
      ctx.fillRect(0, h - 1, w, 1);
      for (let i = 0; i < n; i += 1) {
        const v = vals[i] || 0;
        const bh = max > 0 ? Math.max(1, (v / max) * (h - 4)) : 1;
        ctx.fillStyle = present && scored(m) ? COLORS.bar : COLORS.barOff;
        ctx.fillRect(i * slot + (slot - barW) / 2, h - 1 - bh, barW, bh);
      }
      const note = !cur ? "" : !scored(m) ? "not scored" : !present ? ABSENT_TEXT[m] : !vals.length ? "no weights" : "";
      if (note) {
        ctx.font = "600 12px system-ui, sans-serif";
        const tw = ctx.measureText(note).width + 12;
        ctx.fillStyle = "rgba(11,15,20,0.85)";
        ctx.fillRect(w - tw - 2, 2, tw, 18);
        ctx.fillStyle = "#f2c14e";
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.fillText(note, w - 2 - tw / 2, 11);
      }
    }
  }

  // a perceptually ordered dark-blue -> teal -> yellow ramp (viridis-like)
  const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function rampColor(v) {
    const x = Math.max(0, Math.min(1, v)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(x));
    const f = x - i;
    const c = RAMP[i].map((a, k) => Math.round(a + (RAMP[i + 1][k] - a) * f));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  function drawAttention() {
    const canvas = $("attention");
    const { ctx, w, h } = fitCanvas(canvas);
    const att = state.current && state.current.attention;
    ctx.font = "11px system-ui, sans-serif";
    if (!att || !att.length) {
      ctx.fillStyle = COLORS.text;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(state.current ? "no attention map in this window" : "", w / 2, h / 2);
      canvas.dataset.size = "0";
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
    for (const row of att) for (const v of row) max = Math.max(max, v);
    for (let r = 0; r < T; r += 1) {
      for (let c = 0; c < T; c += 1) {
        ctx.fillStyle = rampColor(max > 0 ? att[r][c] / max : 0);
        ctx.fillRect(ox + c * cell, oy + r * cell, Math.ceil(cell), Math.ceil(cell));
      }
    }
    ctx.fillStyle = COLORS.text;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (let i = 0; i < T; i += 1) {
      ctx.fillText(String(i + 1), ox + (i + 0.5) * cell, oy - 8);
      ctx.fillText(String(i + 1), ox - 9, oy + (i + 0.5) * cell);
    }
  }

  // ------------------------------------------------------------------ CSV export
  function csvCell(v) {
    const s = String(v === null || v === undefined ? "" : v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }

  function exportCsv() {
    const rows = [["session", "seq", "start", "end", "score", "class7", "label", "polarity", "text", "audio", "video", "words"]];
    for (const w of visibleWindows()) {
      const p = w.presence || {};
      rows.push([
        w.session, w.seq, w.start, w.end, w.score, w.class7, w.label, w.polarity,
        p.text ? 1 : 0, p.audio ? 1 : 0, p.video ? 1 : 0,
        (w.words || []).map((x) => x.w).join(" "),
      ]);
    }
    const blob = new Blob([rows.map((r) => r.map(csvCell).join(",")).join("\n") + "\n"], { type: "text/csv" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `hcl-${(state.session || "session").replace(/[^\w.-]+/g, "_")}-scores.csv`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  // ------------------------------------------------------------------ wiring
  function scrubToX(clientX) {
    if (state.mode !== "replay" || !state.windows.length) return;
    const canvas = $("chart");
    const rect = canvas.getBoundingClientRect();
    const g = chartGeometry(rect.width, rect.height, visibleWindows());
    const frac = (clientX - rect.left - g.pad.l) / (rect.width - g.pad.l - g.pad.r);
    const t = g.x0 + frac * (g.x1 - g.x0);
    let best = 0;
    state.windows.forEach((w, i) => {
      if (Math.abs(w.end - t) < Math.abs(state.windows[best].end - t)) best = i;
    });
    setReplayIndex(best);
  }

  function init() {
    $("export-csv").addEventListener("click", exportCsv);
    $("timeline").addEventListener("input", (ev) => {
      stopPlay();
      setReplayIndex(Number(ev.target.value));
    });
    $("play").addEventListener("click", togglePlay);
    $("chart").addEventListener("click", (ev) => scrubToX(ev.clientX));
    const redraw = () => renderAll();
    if (window.ResizeObserver) {
      const ro = new ResizeObserver(redraw);
      for (const id of ["chart", "attention", "weights-text", "weights-audio", "weights-video"]) ro.observe($(id));
    } else {
      window.addEventListener("resize", redraw);
    }
    setInterval(checkStale, 500);
    renderAll();
    connect();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
