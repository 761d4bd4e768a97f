"""The demo pipeline (`vadmil demo`): the whole pipeline on generated video files, each stage a real `vadmil` command.

1. write the street-scene videos and their manifest (:mod:`vadmil.demo.videos`);
2. `vadmil extract` them with a small backbone (X3D-XS, randomly initialised: no download; the store says so);
3. `vadmil train -m sweep=demo`: every head x seeds, in parallel (joblib) — the weakly supervised heads and the
   unsupervised baselines — then the ``self_training`` heads again with `training=self_training`;
4. `vadmil report`: the leaderboard;
5. `vadmil score` one test video with the run that has the best *validation* AUC, with its plot.

Each command is printed before it runs, so the demo doubles as a worked example. Everything lands in one folder
(``output``, default ``runs/demo/<time>``); the last lines say where each artefact is.
"""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from vadmil.commands.catalog import sweep_heads
from vadmil.demo.videos import DemoVideoSpec, generate_videos
from vadmil.errors import VadmilError
from vadmil.rundir import METRICS


def run_stage(name: str, args: list[str], log: Path) -> float:
    """Run ``vadmil <args>`` (echoed): its stdout shown and logged, its stderr (logging, progress bars,
    library warnings) only logged; a failure stops the demo with the end of the log."""
    print(f"\n== {name}\n$ vadmil {' '.join(shlex.quote(a) for a in args)}", flush=True)
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n== {name}\n$ vadmil {' '.join(args)}\n")
        f.flush()
        proc = subprocess.Popen([sys.executable, "-m", "vadmil.cli", *args], stdout=subprocess.PIPE, stderr=f,
                                text=True, bufsize=1)  # fmt: skip
        for line in proc.stdout:
            f.write(line)
            print("  " + line.rstrip(), flush=True)
        code = proc.wait()
    if code:
        tail = [ln for ln in log.read_text().splitlines() if ln.strip()][-3:]
        raise VadmilError(f"demo stage '{name}' failed (exit {code}): {' | '.join(tail)}; full log: {log}")
    return time.perf_counter() - start


def best_run(runs: Path) -> Path:
    """The run dir with the highest validation video AUC (model selection never looks at test metrics;
    unsupervised runs have no validation AUC and are not candidates)."""
    scored = []
    for metrics in sorted(runs.glob(f"*/{METRICS}")):
        m = json.loads(metrics.read_text())
        if m["validation"].get("video_auc") is None:
            continue
        scored.append((m["validation"]["video_auc"], m["head"], -m["seed"], metrics.parent))
    if not scored:
        raise VadmilError(f"no finished run in {runs}")
    return max(scored, key=lambda s: s[:3])[3]


def head_auc(leaderboard_csv: Path) -> dict[str, float]:
    """Mean test frame AUC per head, from the report's leaderboard.csv; rows of other supervision than ``weak``
    are named ``<head> (<supervision>)``, rows on other streams than ``rgb`` ``<head> [<streams>]``."""
    with open(leaderboard_csv) as f:
        rows = list(csv.DictReader(f))
    out = {}
    for r in rows:
        name = r["head"] if r.get("supervision", "weak") == "weak" else f"{r['head']} ({r['supervision']})"
        name += "" if r.get("streams", "rgb") == "rgb" else f" [{r['streams']}]"
        out[name] = float(r["test_frame_auc_mean"])
    return out


def demo(cfg: DictConfig) -> dict:
    out = Path(to_absolute_path(cfg.output))
    out.mkdir(parents=True, exist_ok=True)
    log = out / "demo.log"
    times: dict[str, float] = {}
    start = time.perf_counter()
    print(f"== videos: generating {out / 'data'}", flush=True)
    spec = DemoVideoSpec(**OmegaConf.to_container(cfg.videos))
    videos, manifest = generate_videos(out / "data", spec, progress=cfg.progress)
    times["videos"] = time.perf_counter() - start
    store = out / "features" / "demo_x3d_xs.h5"
    store.parent.mkdir(exist_ok=True)
    extract = [f"{k}={v}" for k, v in OmegaConf.to_container(cfg.extract).items()]
    times["extract"] = run_stage("extract", ["extract", f"input={videos}", f"output={store}", *extract,
                                             f"progress={str(cfg.progress).lower()}"], log)  # fmt: skip
    runs = out / "runs"
    heads = list(cfg.heads) if cfg.heads else sweep_heads()
    common = [f"seed={','.join(map(str, cfg.seeds))}", f"dataset.store={store}", f"dataset.annotations.path={manifest}",
              f"trainer.max_steps={cfg.steps}", f"hydra.launcher.n_jobs={cfg.jobs}"]  # fmt: skip
    train = ["train", "-m", "sweep=demo", f"model={','.join(heads)}", *common, f"hydra.sweep.dir={runs}"]
    times["sweep"] = run_stage(f"sweep: {len(heads)} heads x {len(cfg.seeds)} seeds", train, log)
    # one more row per listed head: on the soundtrack too (both streams), and self-trained
    for title, heads, setting, subdir in (
        ("video + audio", cfg.get("audio_heads"), "data.streams=[rgb,audio]", "audio"),
        ("self-training", cfg.get("self_training"), "training=self_training", "self_training"),
    ):
        if heads:
            args = ["train", "-m", "sweep=demo", setting, f"model={','.join(heads)}", *common,
                    f"hydra.sweep.dir={runs / subdir}"]  # fmt: skip
            times["sweep"] += run_stage(f"{title}: {', '.join(heads)} x {len(cfg.seeds)} seeds", args, log)
    report = out / "report"
    times["report"] = run_stage("report", ["report", f"runs={runs}", f"output={report}"], log)
    chosen = best_run(runs)
    rows = json.loads(manifest.read_text())["videos"]
    video_id = cfg.score_video or next(r["video_id"] for r in rows if r["split"] == "test" and r["label"])
    video = videos / f"{video_id}.mp4"
    scores = out / "scores"
    times["score"] = run_stage(
        f"score {video.name} with {chosen.name} (best validation AUC)",
        ["score", f"video={video}", f"checkpoint={chosen}", f"annotation={manifest}", f"output={scores}",
         f"progress={str(cfg.progress).lower()}"], log,
    )  # fmt: skip
    times["total"] = time.perf_counter() - start
    aucs = head_auc(report / "leaderboard.csv")
    result = {"output": str(out), "store": str(store), "runs": str(runs), "report": str(report),
              "scores": str(scores), "scored_video": video_id, "scored_with": str(chosen),
              "test_frame_auc": aucs, "seconds": {k: round(v, 1) for k, v in times.items()}}  # fmt: skip
    (out / "demo.json").write_text(json.dumps(result, indent=1) + "\n")
    _print_summary(result, out, videos, manifest, report, scores, video_id, cfg.min_auc)
    return result


def _print_summary(r, out, videos, manifest, report, scores, video_id, min_auc) -> None:
    print("\n== demo done in {total:.0f} s (videos {videos:.0f} s, extract {extract:.0f} s, sweep {sweep:.0f} s, "
          "report {report:.0f} s, score {score:.0f} s)".format(**r["seconds"]))  # fmt: skip
    print("test frame AUC (mean over seeds): "
          + ", ".join(f"{h} {a:.3f}" for h, a in sorted(r["test_frame_auc"].items())))  # fmt: skip
    low = [h for h, a in r["test_frame_auc"].items() if a < min_auc]
    if low:
        print(f"WARNING: below {min_auc}: {', '.join(low)}")
    print(f"""artefacts:
  videos + manifest   {videos}/  {manifest}
  feature store       {r["store"]}  (x3d_xs, RANDOM-INIT weights: a demo, not a benchmark)
  runs                {r["runs"]}/<n>_<dataset>_<head>_seed<s>/ (checkpoints/best.ckpt, metrics.json, ...)
  leaderboard         {report}/leaderboard.md  {report}/leaderboard.html
  scored video        {scores}/{video_id}.png  .csv  .json  (run {r["scored_with"]})
  log of every stage  {out}/demo.log""")
