"""Window revisions on the real dashboard (headless Chromium, the real DashboardServer on
127.0.0.1): a second revision of a seq replaces the first on the page (score, words,
chart point, export), a stale revision is ignored, provisional words are drawn apart
and dropped when they commit, and a page that opens late ends on the last revision."""

from __future__ import annotations

import csv
import time

import pytest
from test_dashboard import browser, dashboard_page  # noqa: F401  (fixtures)
from test_server import make_hello

from realtime.core import protocol
from realtime.web.server import DashboardServer

pytest.importorskip("playwright.sync_api")

PRESENT = {"text": True, "audio": True, "video": False}


def win(seq: int, revision: int, score: float, words: list[tuple[str, float, bool]]) -> dict:
    return protocol.window_message(
        session="test-session", seq=seq, start=seq * 0.5, end=seq * 0.5 + 4.0, score=score, presence=PRESENT,
        words=[{"w": t, "start": s, "end": s + 0.3, "provisional": p} for t, s, p in words], revision=revision)


def page_state(dash) -> dict:
    return dash.page.evaluate(
        """() => {
          const q = (id) => document.querySelector(`[data-testid="${id}"]`);
          const words = [...document.querySelectorAll('[data-testid="transcript-word"]')];
          return {
            seq: q('score').dataset.seq, revision: q('score').dataset.revision,
            provisional: q('score').dataset.provisional, score: q('score').textContent, label: q('label').textContent,
            words: words.map((e) => e.textContent),
            provisional_words: words.filter((e) => e.dataset.provisional === 'true').map((e) => e.textContent),
            italic: words.filter((e) => getComputedStyle(e).fontStyle === 'italic').map((e) => e.textContent),
            chart_count: Number(q('chart').dataset.count), chart_provisional: Number(q('chart').dataset.provisional),
          };
        }""")


def wait_revision(dash, seq: int, revision: int) -> None:
    dash.page.wait_for_selector(f'[data-testid="score"][data-seq="{seq}"][data-revision="{revision}"]', timeout=15000)


def test_a_second_revision_replaces_the_first_on_the_page(dashboard_page, tmp_path):  # noqa: F811
    with DashboardServer(hello=make_hello()) as srv:
        dash = dashboard_page(srv.url)
        dash.page.wait_for_selector('[data-testid="connection"][data-state="open"]')
        srv.publish(win(0, 0, 0.1, [("the", 0.5, False)]))
        # seq 1 first on a provisional word: shown greyed and italic, a hollow chart point
        srv.publish(win(1, 0, 2.2, [("the", 0.5, False), ("best", 1.0, True)]))
        wait_revision(dash, 1, 0)
        first = page_state(dash)
        assert first["provisional"] == "true" and first["score"] == "+2.20" and first["label"] == "positive"
        assert first["words"] == ["the", "best"] and first["provisional_words"] == ["best"] and first["italic"] == ["best"]
        assert first["chart_count"] == 2 and first["chart_provisional"] == 1
        # the word commits as a different one: revision 1 replaces revision 0
        srv.publish(win(1, 1, -1.4, [("the", 0.5, False), ("worst", 1.0, False)]))
        wait_revision(dash, 1, 1)
        second = page_state(dash)
        assert second["provisional"] == "false" and second["score"] == "-1.40" and second["label"] == "weakly negative"
        assert second["words"] == ["the", "worst"]  # the provisional "best" is gone, not kept as a word
        assert second["provisional_words"] == [] and second["italic"] == []
        assert second["chart_count"] == 2 and second["chart_provisional"] == 0  # replaced, not added
        # a stale (lower or equal) revision arriving late changes nothing
        srv.publish(win(1, 0, 2.2, [("the", 0.5, False), ("best", 1.0, True)]))
        srv.publish(win(2, 0, 0.0, []))
        dash.wait_for_seq(2)
        assert page_state(dash)["chart_count"] == 3
        with dash.page.expect_download() as dl:
            dash.page.click('[data-testid="export-csv"]')
        path = tmp_path / "scores.csv"
        dl.value.save_as(path)
        rows = list(csv.DictReader(path.open()))
        assert [(r["seq"], r["score"], r["words"]) for r in rows] == [
            ("0", "0.1", "the"), ("1", "-1.4", "the worst"), ("2", "0", "")]  # JavaScript writes 0.0 as 0
        assert dash.console_errors == []


def test_a_late_page_ends_on_the_last_revision(dashboard_page):  # noqa: F811
    with DashboardServer(hello=make_hello()) as srv:
        srv.publish(win(0, 0, 1.0, [("good", 0.5, True)]))
        srv.publish(win(0, 1, 1.2, [("good", 0.5, False)]))
        srv.publish(win(0, 2, 1.6, [("good", 0.5, False), ("fun", 1.0, False)]))
        time.sleep(0.1)
        dash = dashboard_page(srv.url)
        wait_revision(dash, 0, 2)
        shown = page_state(dash)
        assert shown["score"] == "+1.60" and shown["words"] == ["good", "fun"] and shown["chart_count"] == 1
        assert dash.console_errors == []
