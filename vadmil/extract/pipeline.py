"""The extraction pipeline: DataLoader workers decode and transform videos, the main process runs the backbone.

Each worker takes whole videos (video i goes to worker i mod n), decodes them sequentially, cuts snippets as the
frames arrive (memory bounded by one snippet window, never the whole video) and yields batches of transformed
snippets; the main process runs the frozen backbone on them under ``torch.inference_mode`` and appends each
finished video to the store. A video that fails (unreadable, too short, ...) is reported with its reason and the
run goes on; nothing of it is written.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from vadmil.data.geometry import SnippetGeometry
from vadmil.data.labels import normalise_video_id
from vadmil.data.store import FeatureStore
from vadmil.data.store_writer import NoSpaceError
from vadmil.errors import VadmilError, check_choice
from vadmil.extract.decode import open_video
from vadmil.extract.snippets import SnippetAssembler
from vadmil.extract.transforms import short_side_size

log = logging.getLogger("vadmil.extract")
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv", ".ts"}


def list_videos(source: str | os.PathLike) -> list[Path]:
    """Videos of a file, a folder (recursively, by extension) or a text list (one path per line, relative to the
    list's folder), sorted; duplicate video ids are an error."""
    src = Path(source).expanduser()
    if not src.exists():
        raise VadmilError(f"input {src} does not exist; give a video file, a folder of videos or a text list")
    if src.is_dir():
        videos = sorted(p for p in src.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    elif src.suffix.lower() in VIDEO_EXTENSIONS:
        videos = [src]
    else:
        lines = [
            ln.strip() for ln in src.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()
        ]
        videos = sorted(p if p.is_absolute() else src.parent / p for p in map(Path, lines))
    if not videos:
        raise VadmilError(f"no video files in {src} (extensions: {', '.join(sorted(VIDEO_EXTENSIONS))})")
    seen: dict[str, Path] = {}
    for v in videos:
        other = seen.setdefault(normalise_video_id(v.name), v)
        if other != v:
            raise VadmilError(
                f"{other} and {v} have the same video id '{normalise_video_id(v.name)}'; rename one"
            )
    return videos


def shard_of(videos: list[Path], shard: int, num_shards: int) -> list[Path]:
    """The deterministic slice ``shard`` of ``num_shards`` (every num_shards-th video of the sorted list)."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise VadmilError(f"need 0 <= shard < num_shards, got shard={shard} num_shards={num_shards}")
    return videos[shard::num_shards]


@dataclass
class SnippetBatch:
    """What a worker yields: consecutive transformed snippets of one video, or that video's failure."""

    video: int  # index into the pipeline's video list
    clips: torch.Tensor | None = None  # [b, C, 3, L, s, s]
    last: bool = False
    n_frames: int = 0
    fps: float = 0.0
    n_snippets: int = 0
    error: str | None = None
    attrs: dict | None = (
        None  # per-video store attributes: duration_s, time_source, stated_fps, integrity, ...
    )


@dataclass(frozen=True)
class Checks:
    """Per-video checks before any backbone work: ``integrity`` (strict | warn | off) with ``tolerance`` frames
    (see :mod:`vadmil.extract.decode`), and whether videos shorter than one snippet are kept (``allow_short``)."""

    integrity: str = "strict"
    tolerance: int = 1
    allow_short: bool = False


def video_attrs(video) -> dict:
    """What the store records about a decoded video's frames and times (beyond n_frames and fps)."""
    probe = video.probe
    return {
        "duration_s": round(float(video.info.duration_s), 6),
        "time_source": video.info.time_source,
        "stated_fps": float(probe.stated_fps),
        "variable_rate": bool(probe.variable_rate),
        "integrity": "; ".join(video.problems) if video.problems else "ok",
    }


def check_length(path, n_frames: int, geometry: SnippetGeometry, allow_short: bool) -> None:
    """Videos shorter than one snippet are failures unless ``allow_short`` (and the tail policy can keep them)."""
    if n_frames >= geometry.length:
        return
    what = f"{path} has {n_frames} frames, fewer than one {geometry.length}-frame snippet"
    if not allow_short:
        raise VadmilError(
            f"{what}; leave it out, or keep it as one {'padded' if geometry.tail_policy != 'loop' else 'looped'} "
            "snippet with allow_short=true (tail_policy pad_last or loop)"
        )
    if geometry.tail_policy == "drop":
        raise VadmilError(
            f"{what} and tail_policy=drop keeps no partial snippet; use tail_policy=pad_last or loop"
        )


class SnippetStream(IterableDataset):
    """Decode → snippets → transform, one whole video per worker at a time."""

    def __init__(self, videos, geometry: SnippetGeometry, transform, backend="decord", target_fps=None,
                 batch_snippets: int = 4, decoder_resize=None, checks: Checks | None = None):  # fmt: skip
        self.videos, self.geometry, self.transform = list(videos), geometry, transform
        self.backend, self.target_fps, self.batch_snippets = backend, target_fps, batch_snippets
        # "auto": let the decoder produce the transform's resize target directly (its scaler, not torch's: the
        # pixels differ slightly, and the store records it); [h, w]: a fixed decoder-side size; None: off.
        self.decoder_resize = decoder_resize if decoder_resize in (None, "auto") else tuple(decoder_resize)
        self.checks = checks or Checks()

    def __iter__(self) -> Iterator[SnippetBatch]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        for i in range(worker, len(self.videos), n_workers):
            yield from self._video(i)

    def open(self, path: Path, resize=None):
        c = self.checks
        return open_video(path, backend=self.backend, target_fps=self.target_fps, resize=resize,
                          integrity=c.integrity, tolerance=c.tolerance)  # fmt: skip

    def _resize(self, path: Path) -> tuple[int, int] | None:
        if self.decoder_resize != "auto":
            return self.decoder_resize
        if self.transform.resize is not None:
            return tuple(self.transform.resize)
        probe = open_video(path, backend="pyav", integrity="off")  # the frame size only: no decoder opened
        size = short_side_size(probe.info.height, probe.info.width, self.transform.short_side)
        probe.close()
        return size

    def _video(self, i: int) -> Iterator[SnippetBatch]:
        path = self.videos[i]
        try:
            video = self.open(path, self._resize(path))
            n_frames, fps = video.info.n_frames, video.info.fps
            check_length(path, n_frames, self.geometry, self.checks.allow_short)
            n_snippets = self.geometry.n_snippets(n_frames)
            assembler, batch = SnippetAssembler(self.geometry, n_frames), []
            try:
                for chunk in video.chunks():
                    for snippet in assembler.feed(chunk):
                        batch.append(self.transform(snippet))
                        if len(batch) == self.batch_snippets:
                            yield SnippetBatch(i, torch.stack(batch))
                            batch = []
                for snippet in assembler.finish():
                    batch.append(self.transform(snippet))
            finally:
                video.close()
            yield SnippetBatch(i, torch.stack(batch) if batch else None, last=True, n_frames=n_frames, fps=fps,
                               n_snippets=n_snippets, attrs=video_attrs(video))  # fmt: skip
        except VadmilError as err:
            yield SnippetBatch(i, last=True, error=str(err))
        except Exception as err:  # a decoder crash on a corrupt file must not end the whole run
            yield SnippetBatch(
                i, last=True, error=f"{path}: {type(err).__name__}: {' '.join(str(err).split())}"
            )


class BackboneRunner:
    """Runs the frozen backbone on [b, C, 3, L, s, s] batches → float32 features [b, C, D]."""

    def __init__(self, backbone: torch.nn.Module, device: str = "auto", precision: str = "fp32"):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        check_choice("precision", precision, ("fp32", "fp16", "bf16"))
        if precision != "fp32" and not device.startswith("cuda"):
            raise VadmilError(f"precision={precision} needs a CUDA device; use precision=fp32 on {device}")
        self.device, self.precision = torch.device(device), precision
        self.backbone = backbone.to(self.device).eval()

    @torch.inference_mode()
    def __call__(self, clips: torch.Tensor) -> np.ndarray:
        b, c = clips.shape[:2]
        x = clips.flatten(0, 1).to(self.device, non_blocking=True)
        if self.precision == "fp32":
            feats = self.backbone(x)
        else:
            dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
            with torch.autocast(self.device.type, dtype=dtype):
                feats = self.backbone(x)
        return feats.float().reshape(b, c, -1).cpu().numpy()


def _identity(item):
    return item  # module-level so it pickles into spawned workers


def _audio(audio, path: Path, item: SnippetBatch) -> tuple[dict, dict]:
    """({"audio": [T, 128]}, per-video attributes) of one video, or nothing without an audio embedder."""
    if audio is None:
        return {}, {}
    embedding, attrs = audio(path, item.n_snippets, item.fps)
    return {"audio": embedding}, attrs


def failures_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".failures.json")


def run_extraction(store: FeatureStore, stream: SnippetStream, runner: BackboneRunner,
                   num_workers: int = 2, progress: bool = True, audio=None) -> dict:  # fmt: skip
    """Extract every video of ``stream`` into ``store``; returns counts, failures and throughput. ``audio``: an
    :class:`~vadmil.extract.audio.AudioEmbedder` adding each video's ``audio`` stream, or None."""
    ids = [normalise_video_id(v.name) for v in stream.videos]
    loader = DataLoader(stream, batch_size=None, num_workers=num_workers, collate_fn=_identity)
    partial: dict[int, list[np.ndarray]] = {}
    failures: dict[str, str] = {}
    done = snippets = 0
    start = time.perf_counter()
    bar = tqdm(total=len(ids), desc="extract", unit="video", disable=not progress)
    for item in loader:
        if item.clips is not None and item.error is None:
            partial.setdefault(item.video, []).append(runner(item.clips))
        if not item.last:
            continue
        parts, video_id = partial.pop(item.video, []), ids[item.video]
        if item.error is None:
            features = np.concatenate(parts) if parts else np.zeros((0,))
            if len(features) != item.n_snippets:  # a decoder yielded fewer frames than it announced
                item.error = (
                    f"{stream.videos[item.video]}: decoded {len(features)} snippets, expected {item.n_snippets} "
                    "(truncated or corrupt file?)"
                )
            else:
                try:
                    extra, attrs = _audio(audio, stream.videos[item.video], item)
                    store.append(video_id, features, n_frames=item.n_frames, fps=item.fps, extra=extra,
                                 source=str(stream.videos[item.video]), attrs={**(item.attrs or {}), **attrs})  # fmt: skip
                    done, snippets = done + 1, snippets + len(features)
                except NoSpaceError:
                    raise
                except VadmilError as err:  # e.g. no audio track with audio.missing=error
                    item.error = str(err)
        if item.error is not None:
            failures[str(stream.videos[item.video])] = item.error
            tqdm.write(f"vadmil: failed: {item.error}", file=sys.stderr)
        bar.update(1)
        elapsed = time.perf_counter() - start
        bar.set_postfix(snippets_per_s=f"{snippets / elapsed:.1f}", refresh=False)
    bar.close()
    seconds = time.perf_counter() - start
    return {"extracted": done, "failed": failures, "snippets": snippets, "seconds": seconds}


def record_failures(store_path: Path, failures: dict[str, str], store: FeatureStore) -> None:
    """Keep ``<store>.failures.json`` beside the store: earlier failures not since extracted, plus new ones."""
    path = failures_path(store_path)
    previous = json.loads(path.read_text()) if path.exists() else {}
    current = {p: why for p, why in previous.items() if normalise_video_id(Path(p).name) not in store}
    current.update(failures)
    if current:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    else:
        path.unlink(missing_ok=True)
