"""The settings of the Ray Serve application (`realtime.scale.serve`): replica counts,
what each replica reserves, and the sessions' settings. Plain data, read without Ray:
`serve run realtime.scale.serve:app KEY=VALUE ...` and `hcl-live --ray --ray-setting KEY=VALUE`
both go through `ServeSettings.from_args`."""

# no `from __future__ import annotations`: from_args reads the fields' types at run time
import dataclasses
import math
import pathlib
import typing
from dataclasses import dataclass
from typing import Any

from hcl.features.config import SPEECH_ENGINES

# the most live sessions one server (hcl-live, or one Ray Serve ingress replica) takes:
# each place reserves the shared scorer's input rows up front and has its batch size
# traced before the first session (about a second each on a CPU); more sessions: more
# ingress replicas
MAX_SESSIONS = 256

@dataclass(frozen=True)
class ServeSettings:
    """Replica counts, resources per replica and the sessions' settings."""

    checkpoint: str | None = None  # None: the shipped live model
    ingress_replicas: int = 1
    scorer_replicas: int = 1
    speech_replicas: int = 1
    ingress_cpus: float = 1.0  # a session's face model and windowing run on its ingress replica
    scorer_cpus: float = 1.0
    speech_cpus: float = 1.0
    scorer_gpus: float = 0.0  # > 0: the scorer replica is placed on a GPU and scores there
    speech_gpus: float = 0.0  # > 0: Whisper runs on CUDA
    asr: str | None = None  # the speech engine, "whisper" | "moonshine" (hcl-live --asr); None: SpeechOptions' default
    threads: int = 1  # torch / OMP / CTranslate2 threads in each replica
    max_sessions: int = 4  # live sessions per ingress replica (then it refuses, as hcl-live --browser)
    batch_size: int = 8  # most windows per scorer pass (@serve.batch max_batch_size)
    batch_wait_s: float = 0.01  # how long a pass waits for more windows / speech passes (batch_wait_timeout_s)
    speech_batch: int = 4  # most Whisper passes decoded as one batch (@serve.batch over sessions and replicas)
    record_dir: str | None = None  # each session recorded into record_dir/<session id>/ (a shared folder on a cluster)
    token: str | None = None  # the dashboard token; needed when the Serve proxy is not on loopback
    # where each ingress replica's dashboard server listens: None = this node's IP (other
    # replicas relay to it); it is always behind a token (token, or one made per app)
    internal_host: str | None = None
    internal_token: str | None = None
    transcribe: bool = True

    def __post_init__(self) -> None:
        for name in ("ingress_replicas", "scorer_replicas", "speech_replicas", "threads", "max_sessions", "batch_size", "speech_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_sessions > MAX_SESSIONS:
            raise ValueError(f"max_sessions must be <= {MAX_SESSIONS} (per ingress replica; more sessions: more "
                             f"ingress_replicas), got {self.max_sessions}")
        for name in ("ingress_cpus", "scorer_cpus", "speech_cpus", "scorer_gpus", "speech_gpus", "batch_wait_s"):
            if not math.isfinite(float(getattr(self, name))) or float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)}")
        if self.asr is not None and self.asr not in SPEECH_ENGINES:
            raise ValueError(f"asr must be one of {', '.join(SPEECH_ENGINES)}, got {self.asr!r}")
        if self.checkpoint is not None and not pathlib.Path(self.checkpoint).is_file():
            raise ValueError(f"checkpoint {self.checkpoint}: no such file (give the path of a .pt checkpoint)")

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> "ServeSettings":
        """Settings from `serve run ... key=value` arguments (strings) or a dict."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in args.items():
            if key not in fields:
                raise ValueError(f"unknown setting {key!r}; the settings are: {', '.join(sorted(fields))}")
            kind = fields[key].type  # int, float, bool, or `X | None`
            base = kind if isinstance(kind, type) else next(a for a in typing.get_args(kind) if a is not type(None))
            if raw is None or not isinstance(raw, str):
                values[key] = raw
            elif base is bool:
                values[key] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif base in (int, float):
                try:
                    values[key] = base(raw)
                except ValueError:
                    raise ValueError(f"setting {key}={raw!r}: expected {base.__name__}") from None
            else:
                values[key] = raw or None
        return cls(**values)
