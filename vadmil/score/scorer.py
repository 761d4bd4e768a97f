"""Scoring videos with a trained run (`vadmil score video=<file or folder> checkpoint=<run dir or .ckpt>`): a
video file → per-frame anomaly scores.

Offline (default): decode and extract the whole video with the training store's recipe, run the head on the
full sequence (or on windows, with ``window=``), expand to frames. ``stream=true``: decode progressively, score
each snippet as soon as its window is complete, print it and append it to ``<id>.stream.csv``; the same final
files follow. Per video: ``<id>.csv``, ``<id>.json``, ``<id>.png`` in ``output`` (default ``<run>/scores``).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from vadmil.data.annotations import load_manifest
from vadmil.data.labels import VideoLabel, frame_labels, normalise_video_id
from vadmil.data.streams import RGB, fuse, run_streams
from vadmil.errors import VadmilError
from vadmil.extract.builder import Extractor
from vadmil.extract.pipeline import BackboneRunner, list_videos
from vadmil.extract.threads import set_threads
from vadmil.rundir import RunDir
from vadmil.score.features import VideoMeta, probe, scoring_extractor, snippet_features
from vadmil.score.model import ScoringModel, load_scoring_model
from vadmil.score.outputs import alerts, frame_start, write_csv, write_json, write_plot
from vadmil.score.windows import StreamingScorer, windowed_scores

STREAM_WINDOW = 32  # default window of a streaming score (the training bags' 32 segments)


class Scorer:
    """One loaded model + its extractor, scoring videos one after another (see :meth:`score`)."""

    def __init__(self, model: ScoringModel, extractor: Extractor, runner: BackboneRunner, cfg: DictConfig):
        self.model, self.extractor, self.runner, self.cfg = model, extractor, runner, cfg
        self.threshold = model.threshold if cfg.threshold is None else float(cfg.threshold)
        self.window = cfg.window if cfg.window is not None or not cfg.stream else STREAM_WINDOW
        self.lookahead = int(cfg.lookahead)
        self.streams = run_streams(model.config)[0]  # what the head was trained on (data.streams)
        if any(s != RGB for s in self.streams) and extractor.audio is None:
            raise VadmilError(
                f"the run was trained on streams {list(self.streams)} but its store's recorded extraction made no "
                "audio stream, so new videos cannot be given one; score with a run trained on an extracted "
                "streams=[rgb,audio] store"
            )

    def _other_streams(self, meta: VideoMeta) -> dict[str, np.ndarray]:
        """The streams besides rgb the head needs, [T, D_e] each: the soundtrack's embedding, as extracted."""
        if all(s == RGB for s in self.streams):
            return {}
        embedding, _ = self.extractor.audio(meta.path, meta.n_snippets, meta.fps)
        return {
            "audio": embedding.astype(self.model.recipe.get("feature_dtype") or "float32").astype(np.float32)
        }

    def _fuse(self, rgb: np.ndarray, others: dict[str, np.ndarray], rows: slice) -> np.ndarray:
        """rgb [t, C, D] of snippets ``rows`` with the other streams' rows → what the head takes."""
        if not others:
            return rgb
        return fuse({RGB: rgb, **{k: v[rows] for k, v in others.items()}}, self.streams, rgb.shape[1])

    def _offline(self, meta: VideoMeta) -> np.ndarray:
        feats = np.stack(list(snippet_features(self.extractor, self.runner, meta, self.model.recipe,
                                               self.cfg.batch_snippets, self.cfg.num_workers, self.cfg.progress)))  # fmt: skip
        feats = self._fuse(feats, self._other_streams(meta), slice(None))
        if self.window is None:
            return self.model.snippet_scores(feats)
        return windowed_scores(self.model.snippet_scores, feats, self.window, self.lookahead)

    def _stream(self, meta: VideoMeta, out: Path) -> np.ndarray:
        g = self.extractor.geometry
        scorer = StreamingScorer(self.model.snippet_scores, self.window, self.lookahead)
        print(f"streaming {meta.path.name}: one score per {g.stride} frames (~{g.stride / meta.fps:.2f} s); a score "
              f"comes once its {g.length}-frame snippet is decoded, plus a latency of {scorer.latency} snippet(s) "
              f"(lookahead); window {self.window or 'all'} snippets", flush=True)  # fmt: skip
        scores = np.full(meta.n_snippets, np.nan, np.float32)
        others = self._other_streams(meta)  # the soundtrack is in the file already: embedded up front
        start = time.perf_counter()
        with open(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["snippet", "first_frame", "last_frame", "end_s", "score", "wall_s"])

            def emit(ready):
                for i, s in ready:
                    scores[i] = s
                    first, last = i * g.stride, min(i * g.stride + g.length, meta.n_frames) - 1
                    wall, end_s = (
                        time.perf_counter() - start,
                        frame_start(meta.times, last + 1, meta.duration_s),
                    )
                    w.writerow([i, first, last, f"{end_s:.3f}", f"{s:.6f}", f"{wall:.3f}"])
                    f.flush()
                    flag = "  ALERT" if s >= self.threshold else ""
                    print(f"  snippet {i:>5}  frames {first:>6}-{last:<6} {end_s:8.2f} s  "
                          f"score {s:.4f}{flag}", flush=True)  # fmt: skip

            for i, feats in enumerate(
                snippet_features(self.extractor, self.runner, meta, self.model.recipe, 1, 0, False)
            ):
                emit(scorer.push(self._fuse(feats[None], others, slice(i, i + 1))[0]))
            emit(scorer.finish())
        return scores

    def score(self, path: Path, output: Path, truth: VideoLabel | None) -> dict:
        """Score one video and write its files; returns the JSON summary."""
        start = time.perf_counter()
        meta = probe(path, self.extractor)
        video_id = normalise_video_id(path.name)
        if self.cfg.stream:
            snippet_scores = self._stream(meta, output / f"{video_id}.stream.csv")
        else:
            snippet_scores = self._offline(meta)
        frames = self.extractor.geometry.expand(torch.from_numpy(snippet_scores), meta.n_frames).numpy()
        seconds = time.perf_counter() - start
        end_inclusive = bool(
            self.model.config.get("eval", {}).get("end_inclusive", True)
        )  # the run's protocol
        labels = frame_labels(truth, len(frames), end_inclusive=end_inclusive) if truth is not None else None
        m = self.model
        summary = {
            "video": str(path), "video_id": video_id, "checkpoint": str(m.checkpoint), "head": m.head,
            "dataset": str(m.config.dataset.name), "seed": int(m.config.seed),
            "n_frames": meta.n_frames, "fps": meta.fps, "duration_s": round(meta.duration_s, 3),
            "time_source": meta.time_source, "integrity": list(meta.problems) or "ok", "n_snippets": meta.n_snippets,
            "recipe": {k: m.recipe.get(k) for k in ("backbone", "weights_sha256", "n_crops", "snippet_len",
                                                     "snippet_stride", "tail_policy", "frame_size", "audio_recipe")},
            "streams": list(self.streams),
            "mode": "stream" if self.cfg.stream else "offline", "window": self.window,
            "lookahead": self.lookahead if self.window is not None else None,
            "latency_snippets": self.lookahead if self.cfg.stream else None,
            "threshold": self.threshold, "max_score": round(float(frames.max()), 6),
            "alerts": alerts(frames, self.threshold, meta.times),
            "ground_truth": [list(iv) for iv in truth.intervals] if truth is not None else None,
            "seconds": round(seconds, 3), "frames_per_second": round(meta.n_frames / seconds, 1),
        }  # fmt: skip
        write_csv(output / f"{video_id}.csv", frames, meta.times, labels)
        write_json(output / f"{video_id}.json", summary, snippet_scores, frames, meta.times)
        if self.cfg.plot:
            title = f"{video_id}: {m.head} ({m.config.dataset.name}, seed {m.config.seed}), {summary['mode']}"
            write_plot(output / f"{video_id}.png", frames, meta.times, meta.duration_s, self.threshold, title,
                       list(truth.intervals) if truth is not None else None)  # fmt: skip
        return summary


def ground_truth(cfg: DictConfig, videos: list[Path]) -> dict[str, VideoLabel]:
    """Annotations for the plot's shading: a manifest (``annotation=``) or ``intervals=`` for one video."""
    if cfg.annotation and cfg.intervals is not None:
        raise VadmilError("give either annotation=<manifest> or intervals=[[start,end],...], not both")
    if cfg.annotation:
        return load_manifest(to_absolute_path(cfg.annotation))
    if cfg.intervals is not None:
        if len(videos) != 1:
            raise VadmilError(
                "intervals= describes one video; score a single file, or use annotation=<manifest>"
            )
        vid = normalise_video_id(videos[0].name)
        pairs = tuple((int(a), int(b)) for a, b in OmegaConf.to_container(cfg.intervals))
        return {vid: VideoLabel(vid, int(bool(pairs)), pairs)}
    return {}


def score(cfg: DictConfig) -> tuple[list[dict], dict[str, str]]:
    """Score every video of ``cfg.video``; returns (summaries, failures path → reason)."""
    model = load_scoring_model(to_absolute_path(cfg.checkpoint))
    overrides = OmegaConf.to_container(cfg.extract) or {}
    if cfg.weights:
        overrides.setdefault("backbone", {})["weights"] = to_absolute_path(cfg.weights)
    extractor = scoring_extractor(model.recipe, str(model.recipe.get("store")), overrides)
    set_threads(
        cfg.get("threads", "auto"), 0 if cfg.stream else cfg.num_workers
    )  # streaming decodes in-process
    runner = BackboneRunner(extractor.backbone, cfg.device, cfg.precision)
    if extractor.audio is not None:
        extractor.audio.net.to(runner.device)
    videos = list_videos(to_absolute_path(cfg.video))
    truth = ground_truth(cfg, videos)
    output = (
        Path(to_absolute_path(cfg.output)) if cfg.output else RunDir.of_checkpoint(model.checkpoint).scores
    )
    output.mkdir(parents=True, exist_ok=True)
    scorer = Scorer(model, extractor, runner, cfg)
    summaries, failures = [], {}
    for path in videos:
        try:
            summary = scorer.score(path, output, truth.get(normalise_video_id(path.name)))
        except VadmilError as err:
            failures[str(path)] = str(err)
            print(f"vadmil: failed: {err}", file=sys.stderr)
            continue
        summaries.append(summary)
        peak = max((a["peak"] for a in summary["alerts"]), default=None)
        print(f"{path.name}: {summary['n_frames']} frames scored in {summary['seconds']:.1f} s "
              f"({summary['frames_per_second']:.0f} frames/s); max score {summary['max_score']:.3f}; "
              f"{len(summary['alerts'])} alert(s) at threshold {summary['threshold']:g}"
              + (f" (peak {peak:.3f})" if peak is not None else "")
              + f"\n  {output / summary['video_id']}.csv .json" + (" .png" if cfg.plot else ""), flush=True)  # fmt: skip
    return summaries, failures
