"""Acoustic features per time step: MFCC, log energy, pitch (F0) and voicing, loudness.

`AudioFeatureExtractor.steps(wave_16k, step_seconds)` cuts 16 kHz mono audio
into steps of `step_seconds` and summarises the 10 ms frames of each step.
Feature layout, `AudioFeatureConfig.dim` = 2 * n_mfcc + 8 columns (48 by default):

    [0, n_mfcc)            MFCC mean over the step's frames         (x 0.1)
    [n_mfcc, 2 n_mfcc)     MFCC standard deviation                   (x 0.1)
    2n+0, 2n+1             log10 frame energy (mean square) mean, std (/ 5; silence floor -2)
    2n+2, 2n+3             F0 mean, std over voiced frames, log2(F0 / 200 Hz) (0 when unvoiced)
    2n+4                   voiced fraction of the step's frames       [0, 1]
    2n+5, 2n+6             loudness (K-weighted level, LKFS-like dB) mean, std (/ 50; floor -100 dB)
    2n+7                   speech flag (1.0 = the step holds speech)

MFCCs are DCT-II of log(mel power + 1e-6) (torchaudio, no per-input dB
clamping, so a step's features do not depend on the rest of the input).
Pitch is YIN's cumulative mean normalised difference computed with FFTs for
a block of frames at a time (torch, CPU or CUDA): the first dip under
`config.yin_threshold` between `f0_max` and `f0_min`, refined by parabolic
interpolation. A step is speech when at least `config.speech_min_voiced` of
its frames are voiced and louder than `config.speech_min_db`. Everything is
deterministic and finite (silence included).

Memory does not grow with the input's length beyond the per-frame results:
the frame statistics are computed in blocks of `FRAME_BLOCK` frames, each block
with `MARGIN_HOPS` hops of the neighbouring audio on both sides (more than any
analysis window reaches, and long enough for the loudness filter's state to
settle), so a block's frames equal those of one pass over the whole input to
float rounding (tests/test_memory_bounds.py checks 1e-4). `steps_stream` takes
the audio itself in pieces, so a long file's features never need its whole track.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
import torchaudio.functional as AF

from hcl.features.config import AudioFeatureConfig

MFCC_SCALE = 0.1
ENERGY_SCALE = 1 / 5
LOUDNESS_SCALE = 1 / 50
LOUDNESS_FLOOR_DB = -100.0
F0_REFERENCE_HZ = 200.0
FRAME_BLOCK = 3000  # frames per block (30 s at the 10 ms hop)
MARGIN_HOPS = 100  # audio on each side of a block, in hops (1 s)


def audio_feature_names(config: AudioFeatureConfig = AudioFeatureConfig()) -> tuple[str, ...]:
    """Column names of the per-step features, in order (length `config.dim`)."""
    n = config.n_mfcc
    return (
        tuple(f"mfcc{i}_mean" for i in range(n))
        + tuple(f"mfcc{i}_std" for i in range(n))
        + ("log_energy_mean", "log_energy_std", "f0_mean", "f0_std", "voiced_fraction",
           "loudness_mean", "loudness_std", "speech")
    )


class AudioFeatureExtractor:
    """Per-step acoustic features of 16 kHz mono audio; see the module docstring for the layout."""

    def __init__(self, *, config: AudioFeatureConfig = AudioFeatureConfig(), device: str | torch.device = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        sr = config.sample_rate
        self.win = int(round(sr * config.frame_ms / 1000))
        self.hop = int(round(sr * config.hop_ms / 1000))
        n_fft = 1 << (self.win - 1).bit_length()
        self._mfcc = torchaudio.transforms.MFCC(
            sample_rate=sr,
            n_mfcc=config.n_mfcc,
            log_mels=True,
            melkwargs={
                "n_fft": n_fft,
                "win_length": self.win,
                "hop_length": self.hop,
                "n_mels": config.n_mels,
                "center": True,
                "pad_mode": "constant",
                "f_min": 20.0,
                "f_max": sr / 2,
            },
        ).to(self.device)
        self.tau_min = max(2, int(math.floor(sr / config.f0_max)))
        self.tau_max = int(math.ceil(sr / config.f0_min))
        self._yin_len = self.win + self.tau_max + 1
        self._yin_fft = 1 << (self._yin_len + self.win).bit_length()

    @property
    def dim(self) -> int:
        return self.config.dim

    # ------------------------------------------------------------------ public
    def steps(
        self, wave_16k: np.ndarray | torch.Tensor, step_seconds: float, n_steps: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features of each `step_seconds` step of `wave_16k` ((N,) float at 16 kHz).

        Returns (feats (S, dim) float32, speech (S,) bool). S = `n_steps` if given
        (missing audio at the end counts as silence), else the steps covering N
        samples (a final partial step counts). Frames are assigned to the step
        holding their centre.
        """
        feats, speech = self.steps_tensor(torch.as_tensor(np.asarray(wave_16k, dtype=np.float32)), step_seconds, n_steps)
        return feats.cpu().numpy(), speech.cpu().numpy()

    def steps_stream(
        self, pieces: Iterable[np.ndarray], step_seconds: float, n_steps: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """As `steps(np.concatenate(pieces), step_seconds, n_steps)` for audio given as
        consecutive pieces (e.g. `MediaClip.audio_chunks()`), holding only about a block
        of it at a time: what a long file's features need."""
        tensors = (torch.as_tensor(np.asarray(p, dtype=np.float32)) for p in pieces)
        step_samples, per_step = self._geometry(step_seconds)
        feats, speech = self._stream_steps(tensors, step_samples, per_step, n_steps)
        return feats.cpu().numpy(), speech.cpu().numpy()

    @torch.no_grad()
    def steps_tensor(
        self, wave: torch.Tensor, step_seconds: float, n_steps: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As `steps`, on tensors that stay on `self.device`."""
        if wave.ndim != 1:
            raise ValueError(f"expected mono audio of shape (N,), got {tuple(wave.shape)}; average the channels first")
        step_samples, per_step = self._geometry(step_seconds)
        if n_steps is None:
            n_steps = max(1, math.ceil(int(wave.shape[0]) / step_samples - 0.01))
        return self._stream_steps(iter([wave]), step_samples, per_step, n_steps)

    def _geometry(self, step_seconds: float) -> tuple[int, int]:
        step_samples = int(round(step_seconds * self.config.sample_rate))
        if step_samples % self.hop:
            raise ValueError(f"step_seconds={step_seconds} must be a multiple of the hop ({self.config.hop_ms} ms)")
        return step_samples, step_samples // self.hop

    @torch.no_grad()
    def _stream_steps(
        self, pieces: Iterator[torch.Tensor], step_samples: int, per_step: int, n_steps: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The features of `n_steps` steps of the audio that `pieces` hold one after the
        other (cut or zero-padded to the steps), a block of frames at a time: each block
        sees `MARGIN_HOPS` hops of audio on both sides, and audio no later block needs
        is let go."""
        hop, margin = self.hop, MARGIN_HOPS * self.hop
        total = n_steps * step_samples
        n_frames = n_steps * per_step
        block = max(1, FRAME_BLOCK // per_step) * per_step  # whole steps per block
        buf = torch.zeros(0, device=self.device)  # input samples [buf_start, buf_start + len(buf))
        buf_start = seen = 0
        exhausted = False
        feats, speech = [], []
        for k0 in range(0, n_frames, block):
            k1 = min(n_frames, k0 + block)
            a, b = k0 * hop - margin, k1 * hop + margin  # the block's audio with its margins
            while not exhausted and seen < min(b, total):
                piece = next(pieces, None)
                if piece is None:
                    exhausted = True
                    break
                if piece.ndim != 1:
                    raise ValueError(f"expected mono audio of shape (N,), got {tuple(piece.shape)}; average the channels first")
                piece = piece.to(self.device, torch.float32)
                buf = torch.cat([buf, piece]) if len(buf) else piece
                seen += int(piece.shape[0])
            lo = max(0, a)
            hi = max(lo, min(b, total, seen))
            seg = torch.nan_to_num(buf[lo - buf_start : hi - buf_start]).clamp(-1.0, 1.0)
            # outside the input (and past the steps) the one-pass computation sees zeros: so does the block
            seg = F.pad(seg, (lo - a, b - hi))
            # a frame counts when its centre lies inside the input (known once the input ended)
            limit = max(seen, 1) if exhausted else float("inf")
            valid = (torch.arange(k0, k1, device=self.device) * hop) < limit
            f, sp = self._aggregate(*self._block_stats(seg, k1 - k0), valid, per_step)
            feats.append(f)
            speech.append(sp)
            keep_from = k1 * hop - margin  # where the next block's audio starts
            if keep_from > buf_start:
                buf = buf[keep_from - buf_start :]
                buf_start = keep_from
        return torch.cat(feats), torch.cat(speech)

    def _aggregate(
        self,
        mfcc: torch.Tensor,
        log_energy: torch.Tensor,
        loud_db: torch.Tensor,
        f0: torch.Tensor,
        voiced: torch.Tensor,
        valid: torch.Tensor,
        per_step: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step features (see the module docstring) from the frame statistics of whole steps."""
        cfg = self.config
        n_steps = valid.shape[0] // per_step
        voiced = voiced & (loud_db > cfg.speech_min_db) & valid

        def grouped(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(n_steps, per_step, *x.shape[1:])

        vmask = grouped(valid).float()
        mfcc_mean, mfcc_std = _masked_mean_std(grouped(mfcc), vmask)
        e_mean, e_std = _masked_mean_std(grouped(log_energy)[..., None], vmask)
        l_mean, l_std = _masked_mean_std(grouped(loud_db.clamp_min(LOUDNESS_FLOOR_DB) * LOUDNESS_SCALE)[..., None], vmask)
        vo = grouped(voiced).float()
        log_f0 = torch.log2(f0.clamp_min(1.0) / F0_REFERENCE_HZ)
        f_mean, f_std = _masked_mean_std(grouped(log_f0)[..., None], vo)
        counts = vmask.sum(dim=1).clamp_min(1.0)
        voiced_frac = vo.sum(dim=1) / counts
        speech = voiced_frac >= cfg.speech_min_voiced
        feats = torch.cat(
            [
                mfcc_mean,
                mfcc_std,
                e_mean,
                e_std,
                f_mean,
                f_std,
                voiced_frac[:, None],
                l_mean,
                l_std,
                speech.float()[:, None],
            ],
            dim=1,
        )
        return torch.nan_to_num(feats).float(), speech

    def frame_pitch(self, wave_16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per 10 ms frame: (F0 Hz (F,) float32, 0 where unvoiced; voiced (F,) bool). For inspection and tests."""
        wave = torch.as_tensor(np.asarray(wave_16k, np.float32), device=self.device)
        n_frames = max(1, wave.shape[0] // self.hop)
        f0, voiced = self._pitch(wave, n_frames)
        return (f0 * voiced).cpu().numpy(), voiced.cpu().numpy()

    # ------------------------------------------------------------------ parts
    def _block_stats(self, seg: torch.Tensor, count: int):
        """Frame statistics of the `count` frames centred on margin + i * hop of `seg`."""
        first = MARGIN_HOPS
        mfcc = self._mfcc(seg)[:, first : first + count].T * MFCC_SCALE  # (count, n_mfcc)
        centre = first * self.hop
        frames = self._frames(seg, self.win, count, centre)
        log_energy = torch.log10(frames.pow(2).mean(dim=1) + 1e-10) * ENERGY_SCALE
        loud_db = self._loudness_db(seg, count, centre)
        f0, voiced = self._pitch(seg, count, centre)
        return mfcc, log_energy, loud_db, f0, voiced

    def _frames(self, wave: torch.Tensor, length: int, n_frames: int, centre: int = 0) -> torch.Tensor:
        """(n_frames, length) windows centred on centre + k * hop (zero padded at both ends)."""
        left = length // 2
        start = centre - left
        if start > 0:
            wave, start = wave[start:], 0
        need = (n_frames - 1) * self.hop + length
        padded = F.pad(wave, (-start, max(0, need + start - wave.shape[0])))
        return padded.unfold(0, length, self.hop)[:n_frames]

    def _loudness_db(self, wave: torch.Tensor, n_frames: int, centre: int = 0) -> torch.Tensor:
        """K-weighted (ITU-R BS.1770 pre-filter) level of each frame in dB."""
        sr = self.config.sample_rate
        k = AF.treble_biquad(wave, sr, 4.0, 1500.0, 1 / math.sqrt(2))
        k = AF.highpass_biquad(k, sr, 38.0, 0.5)
        ms = self._frames(k, self.win, n_frames, centre).pow(2).mean(dim=1)
        return -0.691 + 10.0 * torch.log10(ms + 1e-12)

    def _pitch(self, wave: torch.Tensor, n_frames: int, centre: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """YIN on n_frames frames at once: (F0 Hz (F,), voiced (F,) bool)."""
        cfg = self.config
        w, tmax, tmin = self.win, self.tau_max, self.tau_min
        x = self._frames(wave, self._yin_len, n_frames, centre)  # (F, w + tmax + 1)
        x = x - x.mean(dim=1, keepdim=True)
        nfft = self._yin_fft
        # r[t] = sum_{j<w} x_j x_{j+t}, for t = 0..tmax, by FFT cross-correlation
        spec_full = torch.fft.rfft(x, n=nfft)
        spec_head = torch.fft.rfft(x[:, :w], n=nfft)
        r = torch.fft.irfft(spec_full * spec_head.conj(), n=nfft)[:, : tmax + 1]
        sq = F.pad(x.pow(2).cumsum(dim=1), (1, 0))  # sq[i] = sum_{j<i} x_j^2
        lags = torch.arange(tmax + 1, device=x.device)
        energy_head = sq[:, w : w + 1]  # sum_{j<w} x_j^2
        energy_shift = sq[:, lags + w] - sq[:, lags]  # sum_{j<w} x_{j+t}^2
        d = (energy_head + energy_shift - 2.0 * r).clamp_min(0.0)
        csum = d[:, 1:].cumsum(dim=1)
        cmnd = torch.ones_like(d)
        scale = energy_head.clamp_min(1e-12)
        cmnd[:, 1:] = torch.where(csum > 1e-6 * scale, d[:, 1:] * lags[1:] / csum.clamp_min(1e-20), torch.ones_like(csum))
        cm = cmnd[:, tmin : tmax + 1]  # candidate lags tmin..tmax
        below = cm < cfg.yin_threshold
        idx = torch.arange(cm.shape[1], device=x.device)
        has = below.any(dim=1)
        first = torch.where(has, below.float().argmax(dim=1), torch.zeros_like(has, dtype=torch.long))
        after = idx[None, :] >= first[:, None]
        left_dip = (after & ~below).long().cumsum(dim=1) > 0
        in_dip = below & after & ~left_dip
        best = torch.where(in_dip, cm, torch.full_like(cm, float("inf"))).argmin(dim=1)
        # parabolic refinement around the best lag
        b0 = (best - 1).clamp(0, cm.shape[1] - 1)
        b2 = (best + 1).clamp(0, cm.shape[1] - 1)
        y0, y1, y2 = cm.gather(1, b0[:, None])[:, 0], cm.gather(1, best[:, None])[:, 0], cm.gather(1, b2[:, None])[:, 0]
        denom = y0 - 2 * y1 + y2
        shift = torch.where(denom.abs() > 1e-9, 0.5 * (y0 - y2) / denom, torch.zeros_like(denom)).clamp(-0.5, 0.5)
        tau = (best + tmin).float() + shift
        f0 = cfg.sample_rate / tau.clamp_min(1.0)
        silent = energy_head[:, 0] < 1e-7 * w  # below ~ -70 dBFS
        voiced = has & ~silent & (f0 >= cfg.f0_min * 0.95) & (f0 <= cfg.f0_max * 1.05)
        return torch.where(voiced, f0, torch.zeros_like(f0)), voiced


def _masked_mean_std(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over dim 1 of x (S, T, D) where mask (S, T) is 1; 0 where none."""
    m = mask[..., None]
    count = m.sum(dim=1)
    safe = count.clamp_min(1.0)
    mean = (x * m).sum(dim=1) / safe
    var = ((x - mean[:, None, :]).pow(2) * m).sum(dim=1) / safe
    mean = torch.where(count > 0, mean, torch.zeros_like(mean))
    std = torch.where(count > 1, var.clamp_min(0.0).sqrt(), torch.zeros_like(var))
    return mean, std
