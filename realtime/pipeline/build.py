"""Assembling a session: the scorer, a file source, what session.json says, an annotated file."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from tqdm import tqdm

from hcl.checkpoint import CheckpointError
from hcl.features.config import FeatureSettings
from realtime.core.component import Policy
from realtime.core.errors import SetupError
from realtime.pipeline.live import LivePipeline, PipelineOptions, new_session_id
from realtime.pipeline.scorer import WindowScorer
from realtime.pipeline.windowing import last_step
from realtime.recording import SessionRecorder
from realtime.sources import SourceError
from realtime.sources.file import FileSource


def load_scorer(checkpoint: str | None, device: str = "auto", max_streams: int = 1) -> WindowScorer:
    """The window scorer of `checkpoint` (None: the shipped live model); SetupError when it cannot be read."""
    try:
        return WindowScorer(checkpoint=checkpoint, device=device, max_streams=max_streams)
    except (FileNotFoundError, CheckpointError) as exc:
        raise SetupError(str(exc)) from None


def open_file_source(path: str, *, policy: Policy, fps: float) -> FileSource:
    """A media file opened as a session's source (SetupError naming what is wrong with it)."""
    # two minutes of audio cover every consumer when nothing waits far behind the reader:
    # as fast as possible the reader stays within its read_ahead (30 s) of the windows, and
    # live windows never wait; --reproducible windows wait for speech however far it lags,
    # so that policy keeps the file (memory bounded by the file's length)
    keep_file = policy is Policy.REPRODUCIBLE
    source = FileSource(path=path, policy=policy, fps=fps, buffer_seconds=None if keep_file else 120.0)
    try:
        source.open()
    except SourceError as exc:
        raise SetupError(str(exc)) from None
    return source


def session_info(*, session_id: str, scorer, options, mode: str, source: str) -> dict[str, Any]:
    """What session.json says about a recorded session (its model, settings and options)."""
    settings = scorer.features
    pipeline = dataclasses.asdict(options)
    pipeline["policy"] = options.policy.value
    return {
        "session": session_id,
        "mode": mode,
        "source": source,
        "model": scorer.model_info,
        "checkpoint": str(scorer.path) if scorer.path else None,
        "settings": {"step_seconds": settings.step_seconds, "window_steps": settings.window_steps},
        "clusters": scorer.config.clusters,
        "features": settings.to_dict(),
        "pipeline": pipeline,
    }


def annotate(path: str, output: str, *, checkpoint: str | None = None, device: str = "auto", progress: bool = True, scorer=None,
             featurizer=None, transcriber=None):
    """Run the live path on `path` as fast as possible into session folder `output`; returns the pipeline.

    `scorer`, `featurizer` (a SegmentFeaturizer, image mode: no state between frames) and
    `transcriber` (a SpeechTranscriber) may be given to keep loaded models across files
    (the --ray actors do); by default each is made for this file."""
    source = open_file_source(path, policy=Policy.FAST, fps=FeatureSettings().face.frames_per_second)  # fail fast on the file
    scorer = scorer or load_scorer(checkpoint, device)
    source.fps = scorer.features.face.frames_per_second
    session_id = new_session_id()
    options = PipelineOptions(policy=Policy.FAST)
    out = pathlib.Path(output)
    try:
        recorder = SessionRecorder(
            out,
            session_info=session_info(session_id=session_id, scorer=scorer, options=options, mode="annotate", source=str(path)),
            audio=source.audio is not None,
        )
    except (FileExistsError, OSError) as exc:
        raise SetupError(f"-o {out}: {exc}") from None
    total = last_step(source.duration or 0.0, scorer.features.step_seconds)
    bar = tqdm(total=total, unit="win", desc=pathlib.Path(path).name, disable=not progress)
    pipeline = LivePipeline(source=source, scorer=scorer, options=options, session_id=session_id, recorder=recorder,
                            featurizer=featurizer, transcriber=transcriber, on_window=lambda msg: bar.update(1))
    try:
        pipeline.start()
        while not pipeline.wait(0.5):
            pass
        # the total was estimated from the header's duration: at the end, the bar shows
        # every window there was as 100 % (a file shorter than its header says included)
        bar.total = bar.n
        bar.refresh()
    finally:
        pipeline.stop()
        bar.close()
    return pipeline
