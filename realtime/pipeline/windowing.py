"""Step clock and 8-step windows.

Pure functions (step times, window stacking, words in a window, presence) plus
`WindowAssembler`, whose readiness rule (`missing`) and text span (`text_start`,
`words_at`) are synchronous steps on a clock, and whose thread, at every step
boundary T = k * step_seconds, makes the step's audio features (`SegmentFeaturizer`,
the same path as training data) and face features (frames of the step through
`aggregate_steps`), and emits a `Window` of the last `window_steps` steps and the
transcript words in it to a bounded `WindowQueue`.

`Policy.waits_for_inputs` (reproducible and as-fast-as-possible runs): a window
waits until its audio, its frames and the speech passes it may use are done, so
the same file gives the same windows at any pace. The live policy (devices): a
window waits at most `max_wait` past its end for audio and then takes what is there.

The window carries everything the scorer needs, its text features included
(`encode_text`, the checkpoint's text encoder), so each modality becomes features
in this one stage and the scorer only runs the model.

With `readouts`, the window also carries what a person can read beside the score
(`hcl.features.readouts.window_readouts`: each face's readouts over the window from
the face worker's per-frame readouts, and the voice's from the window's audio and
transcript words), as a JSON-ready dict. They are not model inputs.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from hcl.features.face import aggregate_steps
from hcl.features.media import n_steps_for
from hcl.features.readouts import voice_readouts, window_readouts
from realtime.core.clock import SessionClock
from realtime.core.component import Policy, RecentStats, Worker
from realtime.pipeline.speech import utterance_onsets

log = logging.getLogger(__name__)
UTTERANCE_TOLERANCE = 0.15  # s: a word whose midpoint is this much before an utterance's onset still belongs to it


# ------------------------------------------------------------------ pure parts
def step_end(k: int, step_seconds: float, origin: float = 0.0) -> float:
    """Session time at which step k (1-based) ends."""
    return origin + k * step_seconds


def last_step(duration: float, step_seconds: float) -> int:
    """Index of the last step of a stream of `duration` seconds: the offline step count
    (`n_steps_for`, a final partial step counts), so live and offline windows agree."""
    return n_steps_for(duration, step_seconds)


def stack_steps(rows: Sequence[np.ndarray], masks: Sequence[bool], window_steps: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The last `window_steps` step rows, oldest first, zero-padded at the end
    (as `collate` pads a short segment): (window_steps, dim), mask (window_steps,)."""
    rows, masks = list(rows)[-window_steps:], list(masks)[-window_steps:]
    out = np.zeros((window_steps, dim), np.float32)
    mask = np.zeros(window_steps, bool)
    for i, (r, m) in enumerate(zip(rows, masks)):
        out[i] = r
        mask[i] = bool(m)
    return out, mask


def window_text(words: Sequence[dict[str, Any]]) -> str:
    return " ".join(str(w["w"]).strip() for w in words if str(w["w"]).strip())


def presence(*, text: str, audio_mask: np.ndarray, video_mask: np.ndarray) -> dict[str, bool]:
    return {"text": bool(text.strip()), "audio": bool(np.any(audio_mask)), "video": bool(np.any(video_mask))}


# ------------------------------------------------------------------ windows
@dataclass
class Window:
    seq: int
    start: float
    end: float
    audio: np.ndarray  # (W, D_a)
    audio_mask: np.ndarray  # (W,)
    video: np.ndarray  # (W, D_v)
    video_mask: np.ndarray
    words: list[dict[str, Any]]
    text: str
    presence: dict[str, bool]
    text_features: np.ndarray | None = None  # (L, D_t) from the text encoder; None: the scorer encodes `text`
    t_ready: float = 0.0  # perf_counter when its inputs were complete
    t_assembled: float = 0.0  # perf_counter when assembled (its features made, text included)
    capture_ms: float = 0.0  # session clock at readiness minus the window end (real-time pace)
    readouts: dict[str, Any] | None = None  # WindowReadouts.to_dict(): faces and voice, for people (not scored)


class WindowQueue:
    """Bounded queue to the scorer. A full queue drops its oldest window (counted in
    `dropped`), or, under the FAST policy, `put` waits: nothing is lost."""

    def __init__(self, *, maxsize: int = 4, policy: Policy = Policy.LIVE) -> None:
        self.maxsize = max(1, maxsize)
        self.block = not policy.drops_when_full
        self.dropped = 0
        self.closed = False
        self._q: collections.deque[Window] = collections.deque()
        self._cond = threading.Condition()
        self._woken = False

    def put(self, window: Window) -> None:
        with self._cond:
            if self.block:
                self._cond.wait_for(lambda: len(self._q) < self.maxsize or self.closed)
            while len(self._q) >= self.maxsize:
                self._q.popleft()
                self.dropped += 1
            self._q.append(window)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Window | None:
        """The oldest window; None on timeout, after `wake()`, or when closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._q or self.closed or self._woken, timeout) or not self._q:
                self._woken = False
                return None
            w = self._q.popleft()
            self._cond.notify_all()
            return w

    def wake(self) -> None:
        """Make a `get` waiting on an empty queue return None now (the reader has other
        work: the newest window's words changed and it is to be scored again)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._q)


class WindowAssembler(Worker):
    """Emits one `Window` per step to `out` (see the module docstring).

    audio: AudioRing or None; faces: FaceWorker or None; speech: SpeechWorker or None;
    featurizer: `hcl.features.segment.SegmentFeaturizer` (its settings give
    step_seconds, window_steps and the feature widths); encode_text: text -> (L, D_t)
    features, or None to leave the encoding to the scorer; on_window(t): called after
    the window ending at `t` is queued (the pipeline releases the source's read-ahead
    and starts encoding the next window's text there).
    """

    name = "windowing"

    def __init__(
        self,
        *,
        featurizer,
        out: WindowQueue,
        clock: SessionClock,
        audio=None,
        faces=None,
        speech=None,
        policy: Policy = Policy.REPRODUCIBLE,
        max_wait: float = 0.15,
        text_context: float | None = None,
        utterance_pause: float | None = None,
        pause_db: float = -45.0,
        duration: float | None = None,
        encode_text: Callable[[str], np.ndarray] | None = None,
        on_window: Callable[[float], None] | None = None,
        readouts: bool = False,
    ) -> None:
        super().__init__()
        s = featurizer.settings
        self.featurizer = featurizer
        self.step = float(s.step_seconds)
        self.window_steps = int(s.window_steps)
        self.audio_dim = int(s.audio.dim)
        self.video_dim = int(s.face.dim)
        self.out = out
        self.clock = clock
        self.audio = audio
        self.faces = faces
        self.speech = speech
        self.policy = policy
        self.strict = policy.waits_for_inputs
        self.realtime = policy.follows_clock
        self.max_wait = max_wait
        self.text_context = float(text_context) if text_context else self.step * self.window_steps
        # the window's text follows the current utterance: words from the start of the latest
        # stretch of speech after `utterance_pause` s of quiet (None: the whole text context)
        self.utterance_pause = utterance_pause
        self.pause_db = pause_db
        self.duration = duration
        self.encode_text = encode_text
        self.on_window = on_window
        self.readouts = readouts
        self.readouts_ms = RecentStats()
        self.position = 0.0  # end of the last emitted window (for readers that must not run ahead)
        self.windows = 0
        self.assemble_ms = RecentStats()
        self._rows: collections.deque = collections.deque(maxlen=self.window_steps)
        self._ready = 0.0
        self._capture_ms = 0.0

    # ---------------------------------------------------------------- thread
    def stats(self) -> dict[str, Any]:
        out = {**super().stats(), "windows": self.windows, "assemble_ms": self.assemble_ms.summary()}
        if self.readouts:
            out["readouts_ms"] = self.readouts_ms.summary()
        return out

    def _ended(self) -> float | None:
        """The stream's end time once known (all inputs ended), else None."""
        if self.duration is not None:
            return self.duration
        ended = []
        if self.audio is not None:
            if not self.audio.ended:
                return None
            ended.append(self.audio.horizon)
        if self.faces is not None:
            feed = self.faces.feed
            # every frame analysed: the worker is done, or the feed ended and holds nothing
            # (between the two the worker thread is still winding down; without this a clip
            # without sound got empty windows past its end while it did)
            if not (self.faces.done.is_set() or (feed.ended and not feed.pending_before(math.inf))):
                return None
            ended.append(feed.horizon)
        if not ended:
            return None
        finite = [e for e in ended if math.isfinite(e)]
        return max(finite) if finite else 0.0

    def run(self) -> None:
        k = 1
        while not self.stopping:
            t = step_end(k, self.step)
            end = self._ended()
            if end is not None and k > last_step(end, self.step):
                break
            if not self._wait_inputs(t):
                continue  # stopped, or re-check the end of stream
            self.out.put(self.assemble(k))
            self.position = t
            k += 1
            if self.on_window is not None:
                self.on_window(t)

    def finish(self) -> None:
        self.out.close()

    def missing(self, t: float, now: float) -> str | None:
        """What the window ending at `t` still waits for at session time `now`: "clock",
        "audio", "faces" or "speech"; None when it can be assembled. Never blocks: the
        readiness rule as a step, testable with a fake clock (the thread waits on the input
        named, then asks again).

        strict: the window's audio, every frame before `t` and the speech passes whose
        words it may use are done. Otherwise (live devices): audio up to `t`, or
        `max_wait` past `t` at the latest; the transcript as it stands."""
        if self.realtime and now < t - 1e-9:
            return "clock"
        audio = self.audio
        if not self.strict:
            if audio is not None and audio.horizon < t and not audio.ended:
                if not self.realtime or now < t + self.max_wait:
                    return "audio"
            return None
        if audio is not None and audio.horizon < t and not audio.ended:
            return "audio"
        if self.faces is not None:
            feed = self.faces.feed
            if audio is None and not (feed.horizon >= t or feed.ended):
                return "faces"
            if not self.faces.done.is_set() and feed.pending_before(t):
                return "faces"
        if self.speech is not None:
            passes = self.speech.transcript.passes
            end = audio.horizon if (audio is not None and audio.ended) else None
            if end is not None and t >= end - 1e-9:
                if not passes.ended:  # the last windows wait for the final pass
                    return "speech"
            else:
                need = self.speech.required_horizon(t)
                if need > 0 and passes.value < need - 1e-9 and not passes.ended:
                    return "speech"
        return None

    def _wait_inputs(self, t: float) -> bool:
        """Wait until the inputs of the window ending at t are there; False to re-check."""
        poll = 0.2
        if self.realtime and not self.clock.sleep_until(t, self._stop):
            return False
        missing = self.missing(t, self.clock.now())
        if missing is None:
            return self._mark_ready(t)
        if missing == "clock":
            self.clock.sleep_until(t, self._stop)
        elif missing == "audio":
            timeout = poll
            if not self.strict and self.realtime:
                timeout = min(poll, max(0.0, t + self.max_wait - self.clock.now()))
            self.audio.wait_until(t, timeout=timeout)
        elif missing == "faces":
            feed = self.faces.feed
            if self.audio is None and feed.horizon < t:
                self._stop.wait(0.01)
            else:
                feed.wait_idle_before(t, timeout=poll)
        else:  # speech
            need = self.speech.required_horizon(t)
            ended = self.audio is not None and self.audio.ended and t >= self.audio.horizon - 1e-9
            self.speech.transcript.passes.wait_until(math.inf if ended else need - 1e-9, timeout=poll)
        return False

    def _mark_ready(self, t: float) -> bool:
        self._ready = time.perf_counter()
        self._capture_ms = max(0.0, (self.clock.now() - t) * 1000) if self.realtime else 0.0
        return True

    # ---------------------------------------------------------------- one window
    def step_features(self, k: int) -> tuple[np.ndarray, bool, np.ndarray, bool]:
        """(audio row, speech flag, video row, face flag) of step k."""
        t1 = step_end(k, self.step)
        t0 = t1 - self.step
        a_row = np.zeros(self.audio_dim, np.float32)
        a_ok = False
        if self.audio is not None and self.audio.covered(t0, t1) > 0:
            feats = self.featurizer.featurize_arrays(self.audio.read(t0, t1), None, n_steps=1)
            a_row, a_ok = feats.audio[0], bool(feats.audio_mask[0])
        v_row = np.zeros(self.video_dim, np.float32)
        v_ok = False
        if self.faces is not None:
            times, feats = self.faces.track.between(t0, t1)
            if times:
                rows, mask = aggregate_steps([t - t0 for t in times], feats, 1, self.step, dim=self.video_dim)
                v_row, v_ok = rows[0], bool(mask[0])
        return a_row, a_ok, v_row, v_ok

    def text_start(self, end: float) -> float:
        """Where the text of the window ending at `end` starts: `end - text_context`, or
        later, where the current utterance starts in the audio (`utterance_onsets`). An
        utterance becomes the current one once the speech before it is transcribed for
        good (`speech.settled_until`), so the last words of a sentence are not cut from
        the text before they arrive because the next sentence has begun."""
        t0 = end - self.text_context
        if self.utterance_pause is None or self.audio is None:
            return t0

        settled = self.speech.settled_until if self.speech is not None else math.inf
        wave = self.audio.read(t0, end)
        onsets = utterance_onsets(wave, t0=t0, sample_rate=self.audio.sample_rate, pause=self.utterance_pause, threshold_db=self.pause_db)
        current = [onset for onset, before in onsets if before <= settled + UTTERANCE_TOLERANCE]
        # Whisper's word times wobble by ~0.1 s: a word starting just before the onset belongs to it
        return max(t0, current[-1] - UTTERANCE_TOLERANCE) if current else t0

    def words_at(self, end: float, *, provisional: bool = False) -> list[dict[str, Any]]:
        """The transcript words of the window ending at `end`, as known now; with
        `provisional` (live policy only), followed by the words of the latest hypothesis
        after the last committed one, marked {"provisional": True}."""
        if self.speech is None:
            return []
        available_by = end if self.strict else None
        t0 = self.text_start(end)
        transcript = self.speech.transcript
        timed = transcript.words(t0, end, available_by=available_by)
        out = [{"w": w.text, "start": w.start, "end": w.end} for w in timed]
        if provisional and not self.strict:
            # after the last committed word: a pass commits before it replaces the hypothesis,
            # so a hypothesis read in between may still hold words just committed
            after = max((0.5 * (w.start + w.end) for w in transcript.words(t0, math.inf)), default=-math.inf)
            out += [{"w": w.text, "start": w.start, "end": w.end, "provisional": True}
                    for w in transcript.provisional_words(t0, end) if 0.5 * (w.start + w.end) > after]
        return out

    def window_readouts(self, start: float, end: float) -> dict[str, Any]:
        """The readouts of [start, end): each face's (from the frames' readouts) and the
        voice's (the window's audio; the transcript's words as known now, a few seconds
        around the window so that a pause across its edges is seen)."""
        frames = self.faces.track.readouts_between(start, end) if self.faces is not None else []
        voice = None
        if self.audio is not None and self.audio.covered(start, end) > 0:
            words = []
            if self.speech is not None:
                words = self.speech.transcript.words(start - 2.0, end + 2.0, available_by=end if self.strict else None)
            voice = voice_readouts(self.audio.read(start, end), words, start, end)
        return window_readouts(frames, start, end, voice).to_dict()

    def assemble(self, k: int) -> Window:
        t_ready = self._ready or time.perf_counter()
        self._rows.append(self.step_features(k))
        end = step_end(k, self.step)
        start = max(0.0, end - self.step * self.window_steps)
        audio, audio_mask = stack_steps([r[0] for r in self._rows], [r[1] for r in self._rows], self.window_steps, self.audio_dim)
        video, video_mask = stack_steps([r[2] for r in self._rows], [r[3] for r in self._rows], self.window_steps, self.video_dim)
        words = self.words_at(end)
        text = window_text(words)
        text_features = self.encode_text(text) if self.encode_text is not None else None
        readouts = None
        if self.readouts:
            t0 = time.perf_counter()
            readouts = self.window_readouts(start, end)
            self.readouts_ms.add((time.perf_counter() - t0) * 1000)
        now = time.perf_counter()
        self.assemble_ms.add((now - t_ready) * 1000)
        self.windows += 1
        return Window(
            seq=k - 1,
            start=start,
            end=end,
            audio=audio,
            audio_mask=audio_mask,
            video=video,
            video_mask=video_mask,
            words=words,
            text=text,
            presence=presence(text=text, audio_mask=audio_mask, video_mask=video_mask),
            text_features=text_features,
            t_ready=t_ready,
            t_assembled=now,
            capture_ms=self._capture_ms,
            readouts=readouts,
        )
