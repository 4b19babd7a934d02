"""Assembling a session, the one way every caller does it (hcl-live, the session hub, hcl-annotate,
Ray Data through `annotate`, Ray Serve through the hub):

    scorer = load_scorer(checkpoint)                       # or a shared scorer's client
    source = open_file_source(path, policy=..., fps=...)   # or a device / browser source, opened
    pipeline = build_session(source=source, scorer=scorer, options=PipelineOptions(...),
                             mode="live", publish=channel.publish, record_to=folder)

`build_session` makes the recorder (session.json from `session_info`) and the pipeline;
the caller starts, waits for and stops the pipeline.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

from tqdm import tqdm

from hcl.checkpoint import CheckpointError
from hcl.features.config import FeatureSettings
from realtime.core.component import Policy
from realtime.core.errors import SetupError
from realtime.pipeline.live import LivePipeline, PipelineOptions, new_session_id
from realtime.pipeline.scorer import WindowScorer
from realtime.pipeline.speech import SpeechOptions
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


def build_session(
    *,
    source,
    scorer,
    options: PipelineOptions,
    mode: str,
    session_id: str | None = None,
    source_name: str | None = None,
    publish: Callable[[dict[str, Any]], None] | None = None,
    record_to: str | pathlib.Path | None = None,
    on_recording_error: Callable[[str], None] | None = None,
    featurizer=None,
    transcriber=None,
    on_window: Callable[[dict[str, Any]], None] | None = None,
) -> LivePipeline:
    """A session around an opened `source`: its recorder (into `record_to`, when given:
    OSError / FileExistsError when the folder cannot be made) and its pipeline.
    `mode` ("live", "annotate") and `source_name` (default `source.name`) go into session.json."""
    session_id = session_id or new_session_id()
    recorder = None
    if record_to is not None:
        info = session_info(session_id=session_id, scorer=scorer, options=options, mode=mode,
                            source=source_name or source.name)
        recorder = SessionRecorder(pathlib.Path(record_to), session_info=info, audio=source.audio is not None,
                                   on_error=on_recording_error)
    return LivePipeline(source=source, scorer=scorer, options=options, session_id=session_id, publish=publish,
                        recorder=recorder, featurizer=featurizer, transcriber=transcriber, on_window=on_window)


def annotate(path: str, output: str, *, checkpoint: str | None = None, device: str = "auto", progress: bool = True, scorer=None,
             featurizer=None, transcriber=None, asr: str | None = None) -> LivePipeline:
    """Run the live path on `path` as fast as possible into session folder `output`; returns the pipeline.

    `scorer`, `featurizer` (a SegmentFeaturizer, image mode: no state between frames) and
    `transcriber` (a speech engine) may be given to keep loaded models across files
    (the --ray actors do); by default each is made for this file, `asr` naming the engine
    ("whisper" | "moonshine"; None: SpeechOptions' default, LIVE_ENGINE)."""
    fps = FeatureSettings().face.frames_per_second
    source = open_file_source(path, policy=Policy.FAST, fps=fps)  # fail fast on the file, before the model loads
    scorer = scorer or load_scorer(checkpoint, device)
    if scorer.features.face.frames_per_second != fps:  # the checkpoint's frame rate
        source = open_file_source(path, policy=Policy.FAST, fps=scorer.features.face.frames_per_second)
    bar = tqdm(total=last_step(source.duration or 0.0, scorer.features.step_seconds), unit="win",
               desc=pathlib.Path(path).name, disable=not progress)
    try:
        pipeline = build_session(source=source, scorer=scorer, options=PipelineOptions(policy=Policy.FAST, speech=SpeechOptions() if asr is None else SpeechOptions(engine=asr)),
                                 mode="annotate",
                                 source_name=str(path), record_to=output, featurizer=featurizer, transcriber=transcriber,
                                 on_window=lambda msg: bar.update(1))
    except (FileExistsError, OSError) as exc:
        bar.close()
        raise SetupError(f"-o {pathlib.Path(output)}: {exc}") from None
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
        pipeline.join()
        bar.close()
    return pipeline
