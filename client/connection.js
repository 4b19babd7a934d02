// The websocket to /ws: connect, reconnect with backoff and jitter, the connection
// indicator. Messages go to the handler given to connect() (see messages.js).

import { $, withToken } from "./page.js";

const BACKOFF_START_MS = 500;
const BACKOFF_CAP_MS = 8000;
const handlers = { onMessage: () => undefined, onOpen: () => undefined };

const conn = { ws: null, attempt: 0, timer: null };

// a session's page (/s/<secret>) follows that session's stream; any other page the server's own
export function sessionSecret() {
  const m = /^\/s\/([\w-]+)\/?$/.exec(location.pathname);
  return m ? m[1] : null;
}

function wsUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const secret = sessionSecret();
  return withToken(`${proto}//${location.host}/ws${secret ? `?session=${encodeURIComponent(secret)}` : ""}`);
}

export function setConn(kind, text) {
  const el = $("connection");
  el.dataset.state = kind;
  el.querySelector(".conn-text").textContent = text;
}

function openSocket() {
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
    handlers.onOpen();
  };
  ws.onmessage = (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (err) {
      return;
    }
    handlers.onMessage(msg);
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
  conn.timer = setTimeout(openSocket, delay);
}

// connect and stay connected: onMessage(msg) for every JSON message, onOpen() on each (re)connection
export function connect(onMessage, onOpen) {
  handlers.onMessage = onMessage;
  handlers.onOpen = onOpen;
  openSocket();
}

// drop the current socket and connect again at once (the page now follows another stream)
export function reconnect() {
  const old = conn.ws;
  conn.ws = null;
  if (old) {
    old.onclose = null;
    old.onmessage = null;
    old.close(1000);
  }
  conn.attempt = 0;
  openSocket();
}

export const isOpen = () => Boolean(conn.ws && conn.ws.readyState === WebSocket.OPEN);

// send one JSON message to the server; false when not connected (the caller says so)
export function send(msg) {
  if (!isOpen()) return false;
  conn.ws.send(JSON.stringify(msg));
  return true;
}
