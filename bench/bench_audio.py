"""What the audio stream costs per video (vadmil/extract/audio.py): decoding a soundtrack (AAC in MP4, PyAV,
resampled to 16 kHz mono), VGGish's log-mel, and the VGGish network (full width, and the demo's width 0.125), on
60 s of sound cut into 25 fps, 16-frame snippets (94 patches) — medians of 3, random-init weights.

    .venv/bin/python bench/bench_audio.py
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import av
import torch
from bench_train import timeit  # bench/ is sys.path[0] when a bench runs as a script

from vadmil.backbones.vggish import VGGishBackbone
from vadmil.data.geometry import SnippetGeometry
from vadmil.demo.soundtrack import RATE, audio_stream, encode_audio, soundtrack
from vadmil.extract.audio import AudioEmbedder, decode_audio, log_mel, snippet_centres, snippet_patches

SECONDS, FPS = 60, 25


def write(path: Path) -> None:
    wave = soundtrack(0, SECONDS * FPS, FPS, [{"kind": "wrong_way", "start": 100, "end": 200}])
    with av.open(str(path), "w") as out:
        encode_audio(out, audio_stream(out), wave)


def main() -> None:
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    )
    geometry = SnippetGeometry(16, 16, "drop")
    n_snippets = geometry.n_snippets(SECONDS * FPS)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sound.m4a"
        write(path)
        decode = timeit(lambda: decode_audio(path), 3, warmup=1)
        wave = decode_audio(path)
        mel = timeit(lambda: log_mel(wave), 3, warmup=1)
        patches = snippet_patches(log_mel(wave), snippet_centres(geometry, n_snippets, FPS))
        print(f"{SECONDS} s of sound ({len(wave) / RATE:.1f} s decoded), {n_snippets} snippets")
        print(f"decode + resample: {decode * 1e3:.0f} ms; log-mel: {mel * 1e3:.0f} ms")
        for width in (1.0, 0.125):
            embedder = AudioEmbedder(VGGishBackbone(random_init=True, width=width), geometry)
            net = timeit(lambda e=embedder: e.embed(patches), 3, warmup=1)
            print(f"VGGish width {width:g}: {net * 1e3:.0f} ms for {len(patches)} patches "
                  f"({net / len(patches) * 1e3:.1f} ms each)")  # fmt: skip


if __name__ == "__main__":
    main()
