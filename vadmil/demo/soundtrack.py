"""The demo videos' soundtrack (``DemoVideoSpec.sound``): street noise, harmless chirps, and a horn on some anomalies.

Every video hears a traffic rumble (low-passed noise at its own level) and a few short high chirps at random
times, normal videos included, so "something made a sound" is no anomaly. A ``wrong_way`` event sounds a loud
two-tone horn for its whole interval; an ``appearance`` makes no sound. So the audio stream tells about some of the
anomalies only, as a soundtrack does: a model on both streams can use it, one on sound alone misses the silent ones.

The sound is a pure function of the video's seed (its own generator: the frames are the same with or without it),
written as 16 kHz mono AAC into the MP4 beside the H.264 video (PyAV).
"""

from __future__ import annotations

import numpy as np

RATE = 16000
AUDIBLE = {"wrong_way": "horn"}  # events that make a sound; the others are silent
_FRAME = 1024  # AAC frame size (samples)


def soundtrack(seed: int, n_frames: int, fps: float, events: list[dict]) -> np.ndarray:
    """The video's sound, float32 [n_samples] in [-1, 1], as long as its frames (n_frames / fps seconds)."""
    rng = np.random.default_rng([seed, 1])
    n = int(round(n_frames / fps * RATE))
    noise = rng.normal(0.0, 1.0, n + 63)
    rumble = np.convolve(noise, np.ones(64) / 8.0, mode="valid")[:n]  # a moving average: low-passed noise
    wave = rumble * rng.uniform(0.02, 0.05)
    t = np.arange(n) / RATE
    for start in rng.uniform(0, n / RATE, int(rng.integers(2, 6))):  # chirps: 0.1 s, 2.5-4 kHz
        i, j = int(start * RATE), min(n, int((start + 0.1) * RATE))
        wave[i:j] += 0.08 * np.sin(2 * np.pi * rng.uniform(2500, 4000) * t[i:j]) * np.hanning(j - i)
    for ev in events:
        if AUDIBLE.get(ev["kind"]) == "horn":
            i, j = int(ev["start"] / fps * RATE), min(n, int((ev["end"] + 1) / fps * RATE))
            horn = np.sign(np.sin(2 * np.pi * 400 * t[i:j])) + np.sign(np.sin(2 * np.pi * 500 * t[i:j]))
            wave[i:j] += 0.2 * horn
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def audio_stream(container):
    """A 16 kHz mono AAC stream in an open PyAV output ``container`` (add it before anything is muxed)."""
    stream = container.add_stream("aac", rate=RATE, layout="mono")
    stream.thread_count = 1
    return stream


def encode_audio(container, stream, wave: np.ndarray) -> None:
    """Encode ``wave`` (16 kHz mono) into ``stream`` of ``container``."""
    import av

    for s in range(0, len(wave), _FRAME):
        frame = av.AudioFrame.from_ndarray(
            wave[None, s : s + _FRAME], format=stream.format.name, layout="mono"
        )
        frame.sample_rate, frame.pts = RATE, s
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
