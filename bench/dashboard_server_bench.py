"""Dashboard server benchmark on 127.0.0.1: the replay get_session flood of issue 10.3
and the late tab of issue 13.4.

    python bench/dashboard_server_bench.py [--windows 7200] [--requests 200] [--repeat 3]

1. Replay flood: a replay server holding a session of `--windows` windows (7200 = 1 h
   at the 0.5 s step); one client sends `--requests` get_session at once while another
   thread polls GET /health. Reports /health latency p50/p95/max during the flood, how
   many whole sessions were sent, and the process's RSS growth (VmRSS).
2. Late tab: a live server whose history holds `--windows` windows; a headless
   Chromium tab opens the dashboard: time until it shows the newest window (median of
   `--repeat`), and the bytes of history the server keeps.

Prints a table and writes bench/results/dashboard_server.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import pathlib
import statistics
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def rss_mb() -> float:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    from realtime.core.component import percentile

    return percentile(values, q)


def health_ms(port: int) -> float:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/health")
    conn.getresponse().read()
    conn.close()
    return (time.perf_counter() - t0) * 1000


def many_windows(n: int, session: str = "test-session") -> list[dict]:
    """n windows as large as real ones, made fast (make_window is quadratic in n)."""
    from test_server import make_window

    templates = [make_window(s, session=session) for s in range(24)]
    out = []
    for seq in range(n):
        w = dict(templates[seq % 24])
        shift = (seq - seq % 24) * 0.5
        w.update(seq=seq, start=w["start"] + shift, end=w["end"] + shift,
                 words=[{**x, "start": x["start"] + shift, "end": x["end"] + shift} for x in w["words"]])
        out.append(w)
    return out


def replay_flood(n_windows: int, n_requests: int) -> dict:
    from test_server import make_hello
    from websockets.sync.client import connect

    from realtime.core import protocol
    from realtime.web.server import DashboardServer

    session = protocol.session_message(session="long", windows=many_windows(n_windows, "long"))
    rss0 = rss_mb()
    with DashboardServer(hello=make_hello(session="long", mode="replay"), session=session, stats_interval=60) as srv:
        size = len(srv.channel_for(None).session_text)
        with connect(srv.ws_url, max_size=None) as ws:
            while json.loads(ws.recv(60))["type"] != "session":
                pass
            times: list[float] = []
            stop = threading.Event()

            def poll() -> None:
                while not stop.is_set():
                    times.append(health_ms(srv.port))
                    time.sleep(0.01)

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            t0 = time.perf_counter()
            for _ in range(n_requests):
                ws.send(json.dumps({"type": "get_session"}))
            sessions = 0
            while True:
                try:
                    msg = json.loads(ws.recv(3))
                except TimeoutError:
                    break
                sessions += msg["type"] == "session"
            flood_s = time.perf_counter() - t0 - 3
            stop.set()
            poller.join(60)
        rss1 = rss_mb()
    return {
        "windows": n_windows, "session_mb": round(size / 1e6, 2), "requests": n_requests, "sessions_sent": sessions,
        "health_ms_p50": round(statistics.median(times), 1), "health_ms_p95": round(pct(times, 95), 1),
        "health_ms_max": round(max(times), 1), "health_polls": len(times), "flood_seconds": round(flood_s, 2),
        "rss_growth_mb": round(rss1 - rss0, 1),
    }


def late_tab(n_windows: int, repeat: int) -> dict:
    from playwright.sync_api import sync_playwright
    from test_server import make_hello

    from realtime.web.server import DashboardServer

    times: list[float] = []
    with DashboardServer(hello=make_hello(), history=n_windows, stats_interval=60) as srv:
        for win in many_windows(n_windows):
            srv.publish(win)
        time.sleep(0.5)
        kept = sum(len(t) for t in srv.channel_for(None).history)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"], headless=True
            )
            for _ in range(repeat):
                ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
                page = ctx.new_page()
                t0 = time.perf_counter()
                page.goto(srv.url)
                page.wait_for_selector(f'[data-testid="score"][data-seq="{n_windows - 1}"]', timeout=120000)
                times.append((time.perf_counter() - t0) * 1000)
                ctx.close()
            browser.close()
    return {
        "windows": n_windows, "history_mb": round(kept / 1e6, 2), "bytes_per_window": round(kept / n_windows),
        "late_tab_ms_median": round(statistics.median(times)), "late_tab_ms_max": round(max(times)), "runs": len(times),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=7200)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    flood = replay_flood(args.windows, args.requests)
    tab = late_tab(args.windows, args.repeat)
    print(f"replay flood: {flood['requests']} get_session on a {flood['windows']}-window session ({flood['session_mb']} MB)")
    print(f"  {'sessions sent':<28}{flood['sessions_sent']}")
    print(f"  {'/health p50 / p95 / max':<28}{flood['health_ms_p50']} / {flood['health_ms_p95']} / {flood['health_ms_max']} ms"
          f"  ({flood['health_polls']} polls)")
    print(f"  {'RSS growth':<28}{flood['rss_growth_mb']} MB")
    print(f"late tab: {tab['windows']} windows of history ({tab['history_mb']} MB, {tab['bytes_per_window']} B/window)")
    print(f"  {'newest window shown after':<28}median {tab['late_tab_ms_median']} ms, max {tab['late_tab_ms_max']} ms"
          f" ({tab['runs']} runs)")
    out = ROOT / "bench" / "results" / "dashboard_server.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"replay_flood": flood, "late_tab": tab}, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
