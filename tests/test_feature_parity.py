"""One feature path for training and live: the windows the live pipeline assembles from a
real MOSI clip (real face, real speech) hold the features `SegmentFeaturizer.featurize`
computes offline (the path `hcl-extract` makes training data with) for the same span.

- Per step the live rows are *identical* to `featurize` of that step's 0.5 s span
  (audio and face, values and masks): the live path is `featurize` applied step by step.
- Against `featurize` of the whole window span at once, face rows and both masks are
  identical; audio rows differ only where a 25 ms analysis frame straddles a step
  boundary (the live step sees zeros past its edge, the whole-span pass sees the
  neighbouring audio): at most 0.05 in any feature (two of a step's 50 frames in the
  voiced fraction) and 0.005 on average over all entries (the features are O(1)).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_parity import RecordingScorer  # the real scorer keeping every window it is handed

from realtime.core.component import Policy

pytestmark = pytest.mark.slow

AUDIO_MAX = 0.05
AUDIO_MEAN = 0.005


@pytest.fixture(scope="module")
def live_windows(mosi_video_path, live_scorer):
    from hcl.features.segment import SegmentFeaturizer
    from realtime.pipeline.live import LivePipeline, PipelineOptions
    from realtime.sources.file import FileSource

    featurizer = SegmentFeaturizer(settings=live_scorer.features)
    scorer = RecordingScorer(live_scorer)
    source = FileSource(path=mosi_video_path, policy=Policy.FAST, fps=live_scorer.features.face.frames_per_second)
    pipeline = LivePipeline(source=source, scorer=scorer, featurizer=featurizer,
                            options=PipelineOptions(policy=Policy.FAST, transcribe=False))
    try:
        pipeline.start()
        assert pipeline.wait(300), "the pipeline did not finish a 7.5 s clip in 5 minutes"
    finally:
        pipeline.stop()
        pipeline.join()
    assert not pipeline.problems()
    yield scorer.windows, featurizer
    featurizer.close()


def _rows(window, n):
    """The window's first n step rows (a window near the start is zero-padded at the end)."""
    return window.audio[:n], window.audio_mask[:n], window.video[:n], window.video_mask[:n]


def test_live_rows_equal_featurize_of_each_step(live_windows, mosi_clip):
    windows, featurizer = live_windows
    step = featurizer.settings.step_seconds
    assert len(windows) >= 14 and [w.seq for w in windows] == list(range(len(windows)))
    cache = {}
    for w in windows:
        n = int(round((w.end - w.start) / step))
        for i in range(n):
            t0 = round(w.start + i * step, 6)
            if t0 >= mosi_clip.duration:
                continue
            if t0 not in cache:
                cache[t0] = featurizer.featurize(mosi_clip, t0, t0 + step)
            ref = cache[t0]
            assert np.array_equal(w.audio[i], ref.audio[0]), (w.seq, i)
            assert np.array_equal(w.video[i], ref.video[0]), (w.seq, i)
            assert w.audio_mask[i] == ref.audio_mask[0] and w.video_mask[i] == ref.video_mask[0], (w.seq, i)
    # the clip really exercises both paths
    full = windows[featurizer.settings.window_steps - 1 :]
    assert np.mean([w.video_mask.mean() for w in full]) > 0.5  # a face in most steps
    assert any(w.audio_mask.any() for w in windows) and any(w.video_mask.all() for w in windows)


def test_live_windows_equal_featurize_of_the_window_span(live_windows, mosi_clip):
    windows, featurizer = live_windows
    step = featurizer.settings.step_seconds
    diffs = []
    for w in windows:
        end = min(w.end, mosi_clip.duration)
        ref = featurizer.featurize(mosi_clip, w.start, end)
        n = ref.n_steps
        audio, audio_mask, video, video_mask = _rows(w, n)
        assert n == min(featurizer.settings.window_steps, int(np.ceil((end - w.start) / step - 0.01)))
        assert np.array_equal(audio_mask, ref.audio_mask), w.seq
        assert np.array_equal(video_mask, ref.video_mask), w.seq
        assert np.array_equal(video, ref.video), w.seq  # face features do not look across steps
        diffs.append(np.abs(audio - ref.audio))
        assert not w.audio[n:].any() and not w.video[n:].any()  # padding
    d = np.concatenate(diffs)
    assert d.max() <= AUDIO_MAX, f"audio differs by {d.max():.4f} at most (limit {AUDIO_MAX})"
    assert d.mean() <= AUDIO_MEAN, f"audio differs by {d.mean():.5f} on average (limit {AUDIO_MEAN})"
