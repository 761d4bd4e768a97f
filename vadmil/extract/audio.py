"""The audio stream of `vadmil extract streams=[rgb,audio]`: a video's soundtrack → one VGGish embedding per snippet.

Steps, as VGGish's own input pipeline (github.com/tensorflow/models, research/audioset/vggish; mel_features.py):

1. decode the soundtrack with PyAV, downmix to mono and resample to 16 kHz (libswresample), float in [-1, 1];
2. log-mel spectrogram: 25 ms periodic Hann windows every 10 ms (400 / 160 samples, no padding), 512-point FFT
   magnitudes, 64 triangular mel bands on the HTK mel scale between 125 and 7,500 Hz (the DC bin gets no weight),
   then ``log(mel + 0.01)``;
3. alignment to the video (the rule the store records): snippet i's patch is the 96 log-mel frames (0.96 s)
   centred on the snippet's centre time, ``(start_frame + snippet_len / 2) / fps`` seconds from the start of the
   file; frames before the start or past the end of the soundtrack are silence (``log(0.01)``). So there is exactly
   one audio embedding per video snippet (T_audio == T), whatever the snippet length or frame rate;
4. the VGGish network (:mod:`vadmil.backbones.vggish`) embeds each patch → [T, 128].

A video without an audio track is an error naming it (``audio.missing=error``), or, with ``audio.missing=zeros``,
gets a zero embedding for every snippet and the per-video attribute ``audio: missing (zeros)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from vadmil.backbones.vggish import MEL_BANDS, PATCH_FRAMES
from vadmil.data.geometry import SnippetGeometry
from vadmil.errors import VadmilError, check_choice

SAMPLE_RATE = 16000
WINDOW, HOP = 400, 160  # 25 ms, 10 ms at 16 kHz
FFT = 2 ** math.ceil(math.log2(WINDOW))  # 512
MEL_LOW, MEL_HIGH, LOG_OFFSET = 125.0, 7500.0, 0.01
MISSING = ("error", "zeros")


def decode_audio(path: str | Path, rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The first audio track of ``path``, mono float32 [n] at ``rate`` Hz; None when the file has no audio."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise VadmilError(f"{path}: cannot open for audio ({type(err).__name__}: {err})") from None
    try:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts = []
        for frame in container.decode(audio=0):
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]  # flush the resampler
    except av.FFmpegError as err:
        raise VadmilError(
            f"{path}: its audio track cannot be decoded ({type(err).__name__}: {err})"
        ) from None
    finally:
        container.close()
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def hz_to_mel(hz):
    """HTK mel scale."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(rate: int = SAMPLE_RATE, n_fft: int = FFT, bands: int = MEL_BANDS) -> np.ndarray:
    """Triangular mel weights [n_fft // 2 + 1, bands] (VGGish's: triangles in the mel domain, DC bin zeroed)."""
    bins_mel = hz_to_mel(np.linspace(0.0, rate / 2, n_fft // 2 + 1))
    edges = np.linspace(hz_to_mel(MEL_LOW), hz_to_mel(MEL_HIGH), bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0] = 0.0
    return weights


def log_mel(wave: np.ndarray) -> np.ndarray:
    """Log-mel frames float32 [n_frames, 64] of a 16 kHz mono waveform (no frame when shorter than 25 ms)."""
    x = torch.as_tensor(np.asarray(wave, np.float32), dtype=torch.float64)
    if len(x) < WINDOW:
        return np.zeros((0, MEL_BANDS), np.float32)
    frames = x.unfold(0, WINDOW, HOP)  # [n, 400]
    window = torch.hann_window(WINDOW, periodic=True, dtype=torch.float64)
    spectrum = torch.fft.rfft(frames * window, n=FFT).abs()  # [n, 257]
    mel = spectrum @ torch.from_numpy(mel_matrix())
    return torch.log(mel + LOG_OFFSET).float().numpy()


def snippet_centres(geometry: SnippetGeometry, n_snippets: int, fps: float) -> np.ndarray:
    """Centre time (s) of each snippet: ``(i * stride + length / 2) / fps``."""
    return (np.arange(n_snippets) * geometry.stride + geometry.length / 2) / float(fps)


def snippet_patches(logmel: np.ndarray, centres_s: np.ndarray) -> np.ndarray:
    """The 96-frame patch centred on each time [T, 96, 64]; outside the soundtrack: silence (log 0.01)."""
    silence = np.float32(math.log(LOG_OFFSET))
    pad = PATCH_FRAMES
    padded = np.full((len(logmel) + 2 * pad, MEL_BANDS), silence, np.float32)
    padded[pad : pad + len(logmel)] = logmel
    # frame j covers [j * 10 ms, j * 10 ms + 25 ms): its centre is j * 10 ms + 12.5 ms
    starts = np.rint((centres_s - 0.0125) / (HOP / SAMPLE_RATE)).astype(int) - PATCH_FRAMES // 2
    starts = np.clip(starts + pad, 0, len(padded) - PATCH_FRAMES)
    if not len(starts):
        return np.zeros((0, PATCH_FRAMES, MEL_BANDS), np.float32)
    return np.stack([padded[s : s + PATCH_FRAMES] for s in starts])


@dataclass
class AudioEmbedder:
    """Soundtrack → [T, 128] per video (see the module's steps). ``net``: a VGGish backbone; ``missing``: error |
    zeros; ``batch_patches``: patches per network call."""

    net: torch.nn.Module
    geometry: SnippetGeometry
    missing: str = "error"
    batch_patches: int = 64

    def __post_init__(self):
        check_choice("audio.missing", self.missing, MISSING)
        if int(self.batch_patches) < 1:
            raise VadmilError(f"audio.batch_patches must be >= 1, got {self.batch_patches}")

    @property
    def dim(self) -> int:
        return int(self.net.feature_dim)

    def recipe(self) -> str:
        """How the stream is made, recorded in the store (compared by `vadmil score`)."""
        return (
            f"{self.net.name} (weights {self.net.weights_sha256}); PyAV mono {SAMPLE_RATE} Hz; log-mel: 25 ms periodic "
            f"Hann window, 10 ms hop, {FFT}-point FFT, {MEL_BANDS} HTK mel bands {MEL_LOW:g}-{MEL_HIGH:g} Hz, "
            f"log(mel + {LOG_OFFSET:g}); one 0.96 s patch centred on each video snippet; no audio track: {self.missing}"
        )

    @torch.inference_mode()
    def embed(self, patches: np.ndarray) -> np.ndarray:
        device = next(self.net.parameters()).device
        out = [
            self.net(torch.from_numpy(patches[i : i + self.batch_patches]).to(device)).float().cpu().numpy()
            for i in range(0, len(patches), self.batch_patches)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def __call__(self, path: str | Path, n_snippets: int, fps: float) -> tuple[np.ndarray, dict]:
        """(embeddings float32 [n_snippets, 128], per-video attributes) of the video at ``path``."""
        wave = decode_audio(path)
        if wave is None:
            if self.missing == "error":
                raise VadmilError(
                    f"{path} has no audio track; leave it out, extract it without audio (streams=[rgb]), or store "
                    "zeros for it with audio.missing=zeros (recorded per video)"
                )
            return np.zeros((n_snippets, self.dim), np.float32), {"audio": "missing (zeros)"}
        patches = snippet_patches(log_mel(wave), snippet_centres(self.geometry, n_snippets, fps))
        return self.embed(patches), {"audio": f"{len(wave) / SAMPLE_RATE:.3f} s"}
