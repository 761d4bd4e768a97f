"""MILModule: crop folding, training with a real Trainer, optimiser groups, checkpoint metadata."""

import math
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader

from vadmil.heads.fcn import FCNHead
from vadmil.heads.output import HeadOutput
from vadmil.losses.objective import Objective
from vadmil.losses.ranking import MILRankingLoss
from vadmil.losses.regularizers import SmoothnessLoss, SparsityLoss
from vadmil.rundir import load_checkpoint
from vadmil.training.module import MILModule

CONF = Path(__file__).resolve().parents[1] / "conf"
B, C, T, D = 4, 2, 8, 16


def _objective():
    return instantiate(OmegaConf.load(CONF / "model" / "objective" / "sultani.yaml"))


def _adagrad():
    return instantiate(OmegaConf.load(CONF / "model" / "optimizer" / "adagrad_sultani.yaml"))


def _batch(seed, b=B, c=C, t=T, d=D):
    """Balanced batch: bags alternate abnormal/normal; the last bag is padded."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[-1, t // 2 :] = False
    return {
        "x": torch.randn(b, c, t, d, generator=g),
        "mask": mask,
        "label": torch.tensor([1.0, 0.0] * (b // 2)),
    }


class Recorder(nn.Module):
    """A head that records what it is given and scores each snippet by its first feature."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, features, mask=None):
        self.seen.append((features.shape, None if mask is None else mask.clone()))
        return HeadOutput(scores=features[..., 0], magnitudes=features.norm(dim=-1), features=features)


# ---- crop folding --------------------------------------------------------------------------------------------------
def test_head_sees_bags_times_crops_and_output_is_folded_back():
    head = Recorder()
    batch = _batch(0)
    out = MILModule(head)(batch["x"], batch["mask"])
    (shape, mask), *_ = head.seen
    assert shape == (B * C, T, D)
    assert torch.equal(mask, batch["mask"].repeat_interleave(C, dim=0))  # each crop row gets its bag's mask
    assert out.scores.shape == (B, C, T)
    assert out.magnitudes.shape == (B, C, T)
    assert out.features.shape == (B, C, T, D)
    assert torch.equal(out.scores, batch["x"][..., 0])  # crop k of bag i comes back at [i, k]
    assert torch.equal(out.video_scores, batch["x"][..., 0].mean(dim=1))


def test_identical_crops_give_the_scores_of_one_crop():
    torch.manual_seed(0)
    module = MILModule(FCNHead(D)).eval()
    batch = _batch(1, c=1)
    one = module(batch["x"], batch["mask"]).video_scores
    two = module(batch["x"].repeat(1, 2, 1, 1), batch["mask"]).video_scores
    torch.testing.assert_close(two, one)
    assert one.shape == (B, T)


def test_video_scores_are_the_mean_of_each_crop_scored_alone():
    torch.manual_seed(0)
    module = MILModule(FCNHead(D)).eval()
    batch = _batch(2, c=3)
    together = module(batch["x"], batch["mask"]).video_scores
    alone = [module(batch["x"][:, k : k + 1], batch["mask"]).video_scores for k in range(3)]
    torch.testing.assert_close(together, sum(alone) / 3)


# ---- training ----------------------------------------------------------------------------------------------------
def test_training_step_returns_the_objective_total():
    torch.manual_seed(0)
    module = MILModule(FCNHead(D), objective=_objective()).eval()  # eval: dropout off, so both calls agree
    batch = _batch(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer only warns
        loss = module.training_step(batch, 0)
    expected, _ = module.objective(module(batch["x"], batch["mask"]), batch)
    assert loss.ndim == 0 and math.isfinite(loss.item())
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Three Adagrad steps of the Sultani model on tiny random balanced batches, then one validation pass."""
    torch.manual_seed(0)
    train = [_batch(10 + i) for i in range(3)]
    val = [_batch(20)]
    module = MILModule(FCNHead(D), objective=_objective(), optimizer=_adagrad(), decay_biases=False)
    module.run_info = {
        "config": {"model": {"name": "fcn"}},
        "features": {"backbone": "test", "feature_dim": D},
    }
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = pl.Trainer(
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dataloader-worker and similar Lightning hints
        trainer.fit(
            module,
            train_dataloaders=DataLoader(train, batch_size=None),
            val_dataloaders=DataLoader(val, batch_size=None),
        )
    ckpt = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    return trainer, module, before, val, ckpt


def test_fit_logs_finite_losses_and_their_parts(fitted):
    trainer, *_ = fitted
    assert trainer.global_step == 3
    m = trainer.callback_metrics
    names = ["train/loss", "train/loss/ranking", "train/loss/smoothness", "train/loss/sparsity"]
    assert all(k in m for k in names), sorted(m)
    assert all(math.isfinite(float(m[k])) for k in names)
    parts = sum(float(m[k]) for k in names[1:])
    assert float(m["train/loss"]) == pytest.approx(parts, rel=1e-5)
    assert float(m["train/loss/ranking"]) > 0


def test_fit_changes_the_weights(fitted):
    _, module, before, *_ = fitted
    after = module.state_dict()
    changed = [k for k in before if k.startswith("head.") and not torch.equal(before[k], after[k])]
    assert changed, "no head parameter moved after three optimiser steps"


def test_validation_logs_video_auc_of_max_snippet_scores(fitted):
    trainer, module, _, val, _ = fitted
    module.eval()
    (batch,) = val
    with torch.no_grad():
        scores = module(batch["x"], batch["mask"]).video_scores
    tops = [float(s[m].max()) for s, m in zip(scores, batch["mask"], strict=True)]
    expected = roc_auc_score(batch["label"].numpy(), tops)
    assert float(trainer.callback_metrics["val/video_auc"]) == pytest.approx(expected, abs=1e-6)
    assert float(trainer.callback_metrics["val/selection"]) == pytest.approx(expected, abs=1e-6)


def test_checkpoint_stores_run_info_and_validation_auc_under_vadmil(fitted):
    trainer, module, _, _, ckpt = fitted
    saved = load_checkpoint(ckpt)  # weights_only: a vadmil checkpoint is plain data
    auc = float(trainer.callback_metrics["val/video_auc"])
    assert saved["vadmil"] == {**module.run_info, "val_video_auc": pytest.approx(auc, abs=1e-7)}


def test_on_save_checkpoint_writes_run_info():
    module = MILModule(FCNHead(D))
    module.run_info = {"config": {"seed": 3}}
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["vadmil"]["config"] == {"seed": 3}
    assert math.isnan(checkpoint["vadmil"]["val_video_auc"])  # no validation yet


# ---- optimiser -----------------------------------------------------------------------------------------------------
def test_sultani_adagrad_config():
    opt = _adagrad()([nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.Adagrad)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.01)
    assert group["weight_decay"] == pytest.approx(0.002)
    assert group["eps"] == pytest.approx(1e-8)


def test_no_bias_decay_puts_biases_in_a_group_without_weight_decay():
    module = MILModule(FCNHead(D), optimizer=_adagrad(), decay_biases=False)
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.Adagrad)
    decayed, plain = opt.param_groups
    weights = {id(m.weight) for m in module.head.modules() if isinstance(m, nn.Linear)}
    biases = {id(m.bias) for m in module.head.modules() if isinstance(m, nn.Linear)}
    assert {id(p) for p in decayed["params"]} == weights
    assert {id(p) for p in plain["params"]} == biases
    assert decayed["weight_decay"] == pytest.approx(0.002)
    assert plain["weight_decay"] == 0.0
    assert decayed["lr"] == plain["lr"] == pytest.approx(0.01)


def test_bias_decay_by_default_is_one_group():
    module = MILModule(FCNHead(D), optimizer=_adagrad())
    (group,) = module.configure_optimizers().param_groups
    assert len(group["params"]) == len(list(module.parameters()))
    assert group["weight_decay"] == pytest.approx(0.002)


@pytest.mark.parametrize("decay_biases", [False, True])
def test_step_with_zero_loss_gradient_decays_weights_only_when_asked(decay_biases):
    torch.manual_seed(0)
    module = MILModule(FCNHead(D), optimizer=_adagrad(), decay_biases=decay_biases)
    with torch.no_grad():  # non-zero biases, or decay could not move them anyway
        for m in module.head.modules():
            if isinstance(m, nn.Linear):
                m.bias.fill_(0.5)
    opt = module.configure_optimizers()
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    loss = sum((p * 0).sum() for p in module.parameters())
    loss.backward()
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in module.parameters())
    opt.step()
    for name, p in module.named_parameters():
        moved = not torch.equal(p.detach(), before[name])
        if name.endswith("weight"):
            assert moved, name
        else:
            assert moved == decay_biases, name


def test_scheduler_is_stepped_every_training_step():
    module = MILModule(
        FCNHead(D),
        optimizer=_adagrad(),
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
    )
    config = module.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.Adagrad)
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert config["lr_scheduler"]["interval"] == "step"


def test_n_parameters_counts_the_head():
    assert MILModule(FCNHead(D)).n_parameters == 512 * D + 16961


def test_losses_used_by_the_module_see_folded_outputs():
    # A ranking loss on per-crop peaks: folded + crop-averaged gives 0.5 (see test_losses); unfolded it would fail.
    module = MILModule(
        Recorder(),
        objective=Objective(
            {
                "ranking": {"loss": MILRankingLoss(), "weight": 1.0},
                "smoothness": {"loss": SmoothnessLoss(), "weight": 0.0},
                "sparsity": {"loss": SparsityLoss(), "weight": 0.0},
            }
        ),
    )
    x = torch.zeros(2, 2, 2, 1)
    x[0, 0, 0, 0] = 1.0
    x[0, 1, 1, 0] = 1.0
    batch = {"x": x, "mask": torch.ones(2, 2, dtype=torch.bool), "label": torch.tensor([1.0, 0.0])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = module.training_step(batch, 0)
    assert loss.item() == pytest.approx(0.5)
