"""``training=self_training``: pseudo-label self-training in one command (MIST, Feng et al., CVPR 2021; Zhong et al.,
CVPR 2019, for the idea of training again on cleaned snippet labels).

1. Stage 1 trains ``model=`` as a plain MIL run (validation-selected, as `vadmil train` always does).
2. Its selected checkpoint scores the *training* videos of the training split (never validation or test videos);
   :mod:`vadmil.training.pseudo_labels` turns the scores into snippet labels (normal videos all 0).
3. A snippet-level model (``training.student``, default the same head) trains by BCE on windows of those videos
   with their pseudo-labels (:class:`~vadmil.data.windows.PseudoLabelDataModule`), optionally starting from the
   previous stage's weights; it is validation-selected and tested like any run.
4. ``training.rounds`` > 1 repeats 2–3 with the latest stage as the labeller.

Run dir::

    <run>/
        config.yaml, checkpoints/best.ckpt, predictions.npz    the final stage's (so eval, score, report use it)
        metrics.json                                         the final stage's test metrics, supervision
                                                             "weak+pseudo-labels", and every stage's summary
        stages/1_mil/                                        a complete run dir of stage 1
        stages/2_pseudo/                                     a complete run dir of stage 2, plus
            pseudo_labels.npz                                labels/<id> and teacher scores/<id>, float32 [T]
            pseudo_labels.json                               the rule, label counts, agreement with ground truth
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from vadmil.data.datamodule import stratified_split, video_loader
from vadmil.data.store import FeatureStore
from vadmil.data.streams import open_run_streams, stream_dims_of
from vadmil.errors import VadmilError
from vadmil.evaluation.predict import predict_snippet_scores
from vadmil.rundir import RunDir, load_finished_run, write_json
from vadmil.training import pseudo_labels as pl_rules
from vadmil.training import stages
from vadmil.training.train import load_annotations, resolve_config, train

log = logging.getLogger(__name__)
SUPERVISION = "weak+pseudo-labels"
STAGES = "stages"


def _rule(training: DictConfig) -> dict:
    rule = {
        k: training[k]
        for k in ("rule", "threshold", "top_fraction", "smooth_window", "normalise", "min_positive")
    }
    pl_rules.label_scores(np.zeros(2), **rule)  # checks the rule's values before anything trains
    return rule


def training_scores(stage_dir: Path, cfg: DictConfig, train_videos: dict, train_ids: list[str]) -> dict:
    """Snippet scores [T] of the training videos ``train_ids`` under the selected checkpoint of ``stage_dir``."""
    store = open_run_streams(FeatureStore(cfg.dataset.store), cfg)  # the streams the stages train on
    module = load_finished_run(stage_dir).module(stream_dims_of(store))
    loader = video_loader(store, train_videos, train_ids, cfg.data.normalise, cfg.data.eval_batch_size)
    return predict_snippet_scores(module, loader)


def write_pseudo_labels(stage_dir: Path, cfg: DictConfig, labels: dict, scores: dict, train_videos: dict,
                        rule: dict, teacher: str) -> dict:  # fmt: skip
    """``pseudo_labels.npz`` and ``pseudo_labels.json`` (rule, counts, agreement with ground truth: reported only)."""
    arrays = {f"labels/{v}": y for v, y in labels.items()} | {f"scores/{v}": s for v, s in scores.items()}
    np.savez_compressed(stage_dir / "pseudo_labels.npz", **arrays)
    store = FeatureStore(cfg.dataset.store)
    abnormal = [v for v in labels if train_videos[v].label == 1]
    truth = {}
    if not store.pooled:
        geometry = store.geometry
        for v in abnormal:
            truth[v] = pl_rules.snippet_truth(train_videos[v], store.n_frames(v), len(labels[v]), geometry,
                                              bool(cfg.eval.end_inclusive))  # fmt: skip
    summary = {
        "teacher": teacher,
        "rule": rule,
        "n_videos": len(labels),
        "n_abnormal_videos": len(abnormal),
        "positive_rate_abnormal": float(np.mean(np.concatenate([labels[v] for v in abnormal])))
        if abnormal
        else None,
        "agreement_with_ground_truth": pl_rules.agreement(labels, truth),
        "note": "ground truth is compared after labelling, for this report only; it never chooses a label",
    }
    write_json(stage_dir / "pseudo_labels.json", summary)
    return summary


def _stage_summary(name: str, metrics: dict, pseudo: dict | None) -> dict:
    out = {"stage": name, "head": metrics["head"], "supervision": metrics["supervision"], "test": metrics["test"],
           "validation": metrics["validation"], "selected_step": metrics["selected_step"],
           "fit_seconds": metrics["fit_seconds"]}  # fmt: skip
    if pseudo is not None:
        out["pseudo_labels"] = pseudo
    return out


def train_self_training(cfg: DictConfig, run_dir: Path) -> dict:
    """Run every stage of ``cfg`` (``training=self_training``) under ``run_dir``; returns the final metrics."""
    run = RunDir(run_dir)
    cfg = resolve_config(cfg)
    OmegaConf.save(cfg, run.config)  # replaced by the final stage's config when every stage is done
    training = cfg.training
    rule, rounds = _rule(training), int(training.rounds)
    if rounds < 1:
        raise VadmilError(
            f"training.rounds must be at least 1 (pseudo-label stages after stage 1), got {rounds}"
        )
    student = stages.student_model(cfg)
    if training.init_from_previous and OmegaConf.to_container(student.head) != OmegaConf.to_container(
        cfg.model.head
    ):
        raise VadmilError(
            f"training.init_from_previous=true needs the student head to equal model={cfg.model.name}'s; "
            "set training.init_from_previous=false to train the student from scratch"
        )
    # Only the training annotations are loaded here: pseudo-labels can never see the test split.
    train_videos, test_videos = load_annotations(cfg.dataset)
    train_ids, _ = stratified_split(train_videos, cfg.data.val_fraction, cfg.data.split_seed)
    if set(train_ids) & set(test_videos):
        raise VadmilError("videos in both the training and test annotations; fix the annotations")

    root = run.path / STAGES
    stage_dir = root / "1_mil"
    stage_dir.mkdir(parents=True, exist_ok=True)
    print(f"self-training, stage 1 of {rounds + 1}: {cfg.model.name} (MIL) -> {stage_dir}", flush=True)
    metrics = train(stages.mil_stage(cfg), stage_dir)
    summaries = [_stage_summary("1_mil", metrics, None)]
    stage_cfg = stages.mil_stage(cfg)
    for r in range(1, rounds + 1):
        teacher_dir, name = stage_dir, f"{r + 1}_pseudo"
        stage_dir = root / name
        stage_dir.mkdir(parents=True, exist_ok=True)
        scores = training_scores(teacher_dir, cfg, train_videos, train_ids)
        labels = pl_rules.make_pseudo_labels(scores, {v: train_videos[v] for v in train_ids}, **rule)
        pseudo = write_pseudo_labels(stage_dir, cfg, labels, scores, train_videos, rule, teacher_dir.name)
        init = str(RunDir(teacher_dir).checkpoint) if training.init_from_previous else None
        stage_cfg = stages.pseudo_stage(cfg, student, str(stage_dir / "pseudo_labels.npz"), init)
        print(f"self-training, stage {r + 1} of {rounds + 1}: {student.name} on pseudo-labels ({rule['rule']}, "
              f"{pseudo['positive_rate_abnormal']:.1%} of abnormal-video snippets positive) -> {stage_dir}", flush=True)  # fmt: skip
        metrics = train(stage_cfg, stage_dir)
        summaries.append(_stage_summary(name, metrics, pseudo))

    final = RunDir(stage_dir)
    run.checkpoints.mkdir(exist_ok=True)
    shutil.copyfile(final.checkpoint, run.checkpoint)
    shutil.copyfile(final.predictions, run.predictions)
    top_cfg = OmegaConf.create(OmegaConf.to_container(stage_cfg))
    top_cfg.training = training
    OmegaConf.save(top_cfg, run.config)
    head = cfg.model.name if student.name == cfg.model.name else f"{cfg.model.name}>{student.name}"
    out = {
        **metrics,
        "head": head,
        "objective": "self_training",
        "supervision": SUPERVISION,
        "training": OmegaConf.to_container(training),
        "final_stage": final.path.name,
        "stages": summaries,
    }
    write_json(run.metrics, out)  # written last: its presence marks a complete run
    print(f"self-training done: final stage {final.path.name}, test frame AUC {metrics['test']['frame_auc']:.4f} "
          f"(stage 1: {summaries[0]['test']['frame_auc']:.4f}); run dir: {run.path}", flush=True)  # fmt: skip
    return out


def read_stage_labels(stage_dir: str | Path) -> dict[str, np.ndarray]:
    """The pseudo-labels of a stage dir (``pseudo_labels.npz``)."""
    path = Path(stage_dir) / "pseudo_labels.npz"
    if not path.is_file():
        raise VadmilError(f"{path} does not exist; give a pseudo-label stage dir (stages/2_pseudo, ...)")
    with np.load(path, allow_pickle=False) as data:
        return {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("labels/")}
