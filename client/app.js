// hcl-live dashboard: plain JS, no dependencies, no build step.
// Talks the protocol of realtime/protocol.py over the websocket at /ws.
"use strict";

(() => {
  const MODALITIES = ["text", "audio", "video"];
  const PRESENT_TEXT = { text: "words", audio: "speech", video: "face" };
  const ABSENT_TEXT = { text: "no words", audio: "silence", video: "no face" };
  const LIVE_SPAN_S = 120;       // seconds of history the live chart shows (the export has all)
  const MAX_WINDOWS = 20000;     // kept in memory (about 3 h at 2 windows/s)
  const MAX_WORDS = 20000;
  const TRANSCRIPT_WORDS = 90;   // words shown at once
  const BACKOFF_START_MS = 500;
  const BACKOFF_CAP_MS = 8000;
  const VIDEO_SYNC_S = 0.3;      // video and chart closer than this are in sync
  // the same columns as realtime/protocol.py CSV_COLUMNS (GET /recording/scores.csv)
  const CSV_COLUMNS = ["session", "seq", "start", "end", "text_start", "text_end", "score", "class7", "label",
    "polarity", "text", "audio", "video", "words"];

  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  const token = new URLSearchParams(location.search).get("token");
  const withToken = (url) => (token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url);

  const state = {
    hello: null,
    mode: "live",
    session: null,
    status: null,         // {state, detail} from the server
    stepSeconds: 0.5,
    windows: [],          // sorted by seq
    seqs: new Set(),
    pageCut: 0,           // windows this page dropped past MAX_WINDOWS
    words: [],            // sorted by start
    wordKeys: new Set(),
    current: null,        // the window on show
    announced: "",        // the last label told to screen readers
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
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const colors = () => ({
    pos: css("--pos"), neg: css("--neg"), neu: css("--neu"), grid: css("--line"), text: css("--muted"),
    line: css("--text"), accent: css("--accent"), bar: css("--accent"), barOff: css("--bar-off"),
    card: css("--card"), warn: css("--warn"), none: css("--none"),
  });
  const polarityColor = (c, p) => (p === "positive" ? c.pos : p === "negative" ? c.neg : c.neu);
  const joinWords = (xs) => (xs.length <= 1 ? xs.join("") : `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}`);

  // the words a window's score read: (first start, last end), or null
  function textSpan(w) {
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

  // ------------------------------------------------------------------ connection
  const conn = { ws: null, attempt: 0, timer: null };

  function wsUrl() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    return withToken(`${proto}//${location.host}/ws`);
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
      renderStatus();
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
      case "status": return onStatus(msg);
      case "stats": return onStats(msg);
      case "error": return onError(msg);
      default: return undefined;
    }
  }

  function resetData() {
    state.windows = [];
    state.seqs = new Set();
    state.pageCut = 0;
    state.words = [];
    state.wordKeys = new Set();
    state.current = null;
    stopPlay();
  }

  // modalities the model scores (hello.model.inputs); others are shown but marked "not scored"
  function modelInputs() {
    const inputs = state.hello && state.hello.model && state.hello.model.inputs;
    return Array.isArray(inputs) ? MODALITIES.filter((m) => inputs.includes(m)) : MODALITIES.slice();
  }
  const scored = (m) => modelInputs().includes(m);

  function onHello(msg) {
    if (state.session !== msg.session || state.mode !== msg.mode) resetData();
    state.hello = msg;
    state.session = msg.session;
    state.mode = msg.mode === "replay" ? "replay" : "live";
    state.stepSeconds = (msg.settings && msg.settings.step_seconds) || 0.5;
    $("session-id").textContent = msg.session ? `session ${msg.session}` : "";
    const replay = state.mode === "replay";
    $("replay-controls").hidden = !replay;
    for (const el of document.querySelectorAll("[data-live-only]")) el.hidden = replay;
    for (const el of document.querySelectorAll("[data-replay-only]")) el.hidden = !replay;
    $("chart").classList.toggle("scrubbable", replay);
    renderModel();
    renderHistoryNote();
    setupVideo();
    renderStatus();
    renderAll();
  }

  function renderModel() {
    const model = (state.hello && state.hello.model) || {};
    const inputs = modelInputs();
    const unscored = MODALITIES.filter((m) => !inputs.includes(m));
    const el = $("model-text");
    el.replaceChildren();
    const b = document.createElement("b");
    b.textContent = model.name ? `${model.name}${model.version ? " " + model.version : ""}` : "unknown model";
    el.append("Model ", b, ` scores ${joinWords(inputs)}${unscored.length ? " only" : ""}.`);
    if (unscored.length) {
      el.append(` ${joinWords(unscored).replace(/^./, (c) => c.toUpperCase())} ${unscored.length > 1 ? "are" : "is"} shown but not scored: ${unscored.length > 1 ? "they do" : "it does"} not change the score.`);
    }
    el.dataset.inputs = inputs.join(",");
    const card = $("model-card");
    const url = state.hello && state.hello.model_card;
    card.hidden = !url;
    if (url) card.href = withToken(url);
    for (const m of MODALITIES) $(`weights-figure-${m}`).dataset.scored = String(scored(m));
    // the map shown is the text guide's attention over the video steps
    $("attention-card").dataset.scored = String(scored("video") && scored("text"));
  }

  function renderHistoryNote() {
    const h = (state.hello && state.hello.history) || {};
    const note = $("history-note");
    const cut = (Number(h.cut) || 0) + state.pageCut;
    if (!cut) {
      note.hidden = true;
      return;
    }
    const rec = state.hello && state.hello.recording;
    note.hidden = false;
    note.dataset.cut = String(cut);
    note.textContent =
      `This page shows the last ${state.windows.length} windows; the ${cut} before them were cut ` +
      `(the server keeps ${h.limit || "a limited number of"} windows for tabs that open late). ` +
      (rec ? "Export CSV still has the whole session, from the recording." :
        "Export CSV has only what is shown here; record with hcl-live --record to keep whole sessions.");
  }

  // a problem the server reports (e.g. the recording stopped: the disk is full)
  function onError(msg) {
    const el = $("server-error");
    el.hidden = false;
    el.textContent = `Server: ${msg.message}`;
  }

  function onStatus(msg) {
    state.status = msg;
    renderStatus();
    renderAll();
  }

  function renderStatus() {
    const badge = $("mode");
    const st = state.status ? state.status.state : null;
    const el = $("status");
    const open = conn.ws && conn.ws.readyState === WebSocket.OPEN;
    if (state.mode === "replay") {
      badge.dataset.mode = "replay";
      badge.textContent = "REPLAY";
      el.dataset.state = "finished";
      el.textContent = "recorded session";
    } else if (st === "finished") {
      badge.dataset.mode = "finished";
      badge.textContent = "FINISHED";
      el.dataset.state = "finished";
      el.textContent = `finished${state.status.detail ? " · " + state.status.detail : ""}`;
    } else if (st === "loading") {
      badge.dataset.mode = "live";
      badge.textContent = "LIVE";
      el.dataset.state = "loading";
      el.textContent = "loading models…";
    } else if (st === "running") {
      badge.dataset.mode = "live";
      badge.textContent = "LIVE";
      el.dataset.state = "running";
      el.textContent = "running";
    } else {
      el.dataset.state = "connecting";
      el.textContent = open ? "" : "connecting…";
    }
    if (open) setConn("open", st === "finished" && state.mode === "live" ? "connected · the file has ended" : "connected");
  }

  function addWords(words) {
    let added = false;
    let sorted = true;
    for (const w of words || []) {
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
      const gone = ws.splice(0, ws.length - MAX_WINDOWS);
      for (const old of gone) state.seqs.delete(old.seq);
      state.pageCut += gone.length;
      renderHistoryNote();
    }
    addWords(msg.words);
    if (!state.current || msg.seq >= state.current.seq) state.current = msg;
    state.lastWindowAt = performance.now();
    if (state.status && state.status.state === "loading") {
      state.status = { state: "running", detail: "" };
      renderStatus();
    }
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
    $("timeline").max = String(Math.max(0, state.windows.length - 1));
    setReplayIndex(keep);
  }

  function onStats(msg) {
    state.stats = msg;
    renderHealth();
  }

  // ------------------------------------------------------------------ replay + video
  const video = () => $("replay-video");
  const hasVideo = () => Boolean(state.mode === "replay" && state.hello && state.hello.recording && state.hello.recording.video);

  function setupVideo() {
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

  function setReplayIndex(i, { fromVideo = false } = {}) {
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

  function stopPlay() {
    clearInterval(state.playTimer);
    state.playTimer = null;
    const btn = $("play");
    if (btn) btn.textContent = "▶ play";
    const v = video();
    if (v && !v.paused) v.pause();
  }

  function togglePlay() {
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

  // ------------------------------------------------------------------ rendering
  // everything is drawn once per frame, however many messages came (a late tab gets
  // up to an hour of history at once)
  let frameRequested = false;
  function renderAll() {
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
    });
  }

  function renderNow() {
    const w = state.current;
    const score = $("score");
    const label = $("label");
    if (!w) {
      score.textContent = "–";
      score.dataset.seq = "";
      score.dataset.polarity = "none";
      const st = state.status && state.status.state;
      label.textContent = state.mode === "replay" ? "no windows in this session"
        : st === "loading" ? "loading the models: the first score comes in a few seconds"
          : st === "finished" ? "the file ended before the first window" : "waiting for the first window";
      $("window-time").textContent = "\u00a0";
      $("text-span").textContent = "";
      for (const m of MODALITIES) setModality(m, null);
      return;
    }
    score.textContent = fmtScore(w.score);
    score.dataset.value = String(w.score);
    score.dataset.seq = String(w.seq);
    score.dataset.polarity = w.polarity;
    label.textContent = w.label;
    $("window-time").textContent = `window ${fmtTime(w.start)}–${fmtTime(w.end)} · #${w.seq}`;
    const span = textSpan(w);
    const ts = $("text-span");
    ts.textContent = span ? `words read ${fmtTime(span[0])}–${fmtTime(span[1])}` : "no words read";
    ts.dataset.start = span ? String(span[0]) : "";
    ts.dataset.end = span ? String(span[1]) : "";
    for (const m of MODALITIES) setModality(m, w.presence ? Boolean(w.presence[m]) : null);
    announce(w.label);
  }

  // screen readers hear the label when it changes, not every window
  function announce(text) {
    if (text === state.announced) return;
    state.announced = text;
    $("announce").textContent = `Now ${text}`;
  }

  function setModality(m, present) {
    const el = $(`modality-${m}`);
    el.dataset.present = present === null ? "unknown" : String(present);
    el.dataset.scored = String(scored(m));
    el.title = scored(m) ? "" : "this model does not score this modality: it is shown but does not change the score";
    const text = present === null ? "–" : present ? PRESENT_TEXT[m] : ABSENT_TEXT[m];
    el.querySelector(".m-state").textContent = scored(m) ? text : `${text} · not scored`;
  }

  function renderTranscript() {
    const box = $("transcript");
    const w = state.current;
    const currentKeys = new Set((w && w.words ? w.words : []).map(wordKey));
    const until = w ? w.end : Infinity;
    // the last TRANSCRIPT_WORDS words before `until` (words are sorted by start)
    let hi = state.words.length;
    while (hi > 0 && !(state.words[hi - 1].start < until || currentKeys.has(wordKey(state.words[hi - 1])))) hi -= 1;
    const shown = state.words.slice(Math.max(0, hi - TRANSCRIPT_WORDS), hi);
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
    const finished = state.status && state.status.state === "finished";
    const live = state.mode === "live" && state.current && conn.ws && conn.ws.readyState === WebSocket.OPEN;
    const age = (performance.now() - state.lastWindowAt) / 1000;
    const isStale = Boolean(live && !finished && age > Math.max(3, 4 * state.stepSeconds));
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
    let i = ws.length;
    while (i > 0 && ws[i - 1].end >= lastEnd - LIVE_SPAN_S) i -= 1;
    return ws.slice(i);
  }

  function chartGeometry(w, h, vis) {
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

  function drawChart() {
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
        ctx.fillStyle = polarityColor(C, win.polarity);
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
        ctx.strokeStyle = C.accent;
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.moveTo(x, pad.t);
        ctx.lineTo(x, h - pad.b);
        ctx.stroke();
      }
      ctx.fillStyle = polarityColor(C, cur.polarity);
      ctx.strokeStyle = C.card;
      ctx.lineWidth = 3;
      ctx.beginPath();
      ctx.arc(x, y, 8, 0, Math.PI * 2);
      ctx.fill();
      ctx.stroke();
    }
  }

  function drawWeights() {
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

  function drawAttention() {
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

  // ------------------------------------------------------------------ CSV export
  function csvCell(v) {
    const s = String(v === null || v === undefined ? "" : v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }

  function csvRow(w) {
    const p = w.presence || {};
    const span = textSpan(w);
    return [
      w.session, w.seq, w.start, w.end, span ? span[0] : "", span ? span[1] : "", w.score, w.class7, w.label, w.polarity,
      p.text ? 1 : 0, p.audio ? 1 : 0, p.video ? 1 : 0, (w.words || []).map((x) => x.w).join(" "),
    ];
  }

  function download(href, name) {
    const a = document.createElement("a");
    a.href = href;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
  }

  function exportCsv() {
    const name = `hcl-${(state.session || "session").replace(/[^\w.-]+/g, "_")}-scores.csv`;
    const rec = state.hello && state.hello.recording;
    if (rec && rec.csv) {
      // the whole session, from the recording on disk
      download(withToken(rec.csv), name);
      return;
    }
    const rows = [CSV_COLUMNS];
    for (const w of state.windows) rows.push(csvRow(w));
    const blob = new Blob([rows.map((r) => r.map(csvCell).join(",")).join("\n") + "\n"], { type: "text/csv" });
    const url = URL.createObjectURL(blob);
    download(url, name);
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ------------------------------------------------------------------ wiring
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

  function wireChartScrub() {
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

  function stopPlayTimerOnly() {
    if (state.playTimer) stopPlay();
  }

  function wireVideo() {
    const v = video();
    v.addEventListener("timeupdate", onVideoTime);
    v.addEventListener("seeked", onVideoTime);
    v.addEventListener("play", () => { $("play").textContent = "❚❚ pause"; });
    v.addEventListener("pause", () => { $("play").textContent = "▶ play"; });
  }

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
    connect();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
