"""Every head and model config (discovered, so a new one is covered automatically): shapes, masks, padding
independence, and one real training step through MILModule with its objective and optimiser."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vadmil.commands.base import config_dir
from vadmil.training.module import MILModule

CONF = Path(config_dir())
HEADS = sorted(p.stem for p in (CONF / "model" / "head").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
D = 16


def _head(name, in_dim=D):
    torch.manual_seed(0)
    return instantiate(OmegaConf.load(CONF / "model" / "head" / f"{name}.yaml"), in_dim=in_dim)


def _model_cfg(name):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", [f"model={name}"])


def test_every_head_of_the_design_is_shipped():
    assert {"fcn", "gcn", "gcn_hlnet", "rtfm", "dted"} <= set(HEADS)
    assert {"fcn", "gcn", "gcn_hlnet", "rtfm", "dted"} <= set(MODELS)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("t", [1, 2, 7, 32, 300])
@pytest.mark.parametrize("crops", [1, 5, 10])
def test_shapes_and_ranges_for_any_length_and_crop_count(head, t, crops):
    module = MILModule(_head(head)).train()
    x = torch.randn(2, crops, t, D)
    mask = torch.ones(2, t, dtype=torch.bool)
    mask[1, (t + 1) // 2 :] = False  # second bag padded to half its length
    out = module(x, mask)
    assert out.scores.shape == (2, crops, t)
    assert ((out.scores >= 0) & (out.scores <= 1)).all() and torch.isfinite(out.scores).all()
    for extra in (out.logits, out.magnitudes):
        assert extra is None or extra.shape == (2, crops, t)
    assert out.features is None or out.features.shape[:3] == (2, crops, t)
    assert out.video_scores.shape == (2, t)


@pytest.mark.parametrize("head", HEADS)
def test_a_videos_scores_do_not_depend_on_the_padding_of_its_batch(head):
    """Test videos are scored in padded batches: each must score as if alone."""
    module = MILModule(_head(head)).eval()
    lengths = [1, 5, 16, 37]
    x = torch.randn(len(lengths), 3, max(lengths), D)
    mask = torch.tensor([[i < n for i in range(max(lengths))] for n in lengths])
    with torch.no_grad():
        batched = module(x, mask).video_scores
        for i, n in enumerate(lengths):
            alone = module(x[i : i + 1, :, :n], mask[i : i + 1, :n]).video_scores[0]
            assert torch.allclose(batched[i, :n], alone, atol=1e-5), f"{head}: video of length {n}"


@pytest.mark.parametrize("head", HEADS)
def test_input_size_comes_from_the_store_not_a_constant(head):
    for in_dim in (7, 2048):
        out = MILModule(_head(head, in_dim)).eval()(
            torch.randn(1, 1, 4, in_dim), torch.ones(1, 4, dtype=torch.bool)
        )
        assert out.scores.shape == (1, 1, 4)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_takes_a_training_step(model):
    cfg = _model_cfg(model)
    torch.manual_seed(0)
    module = MILModule.from_config(cfg, in_dim=D)
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    b, c, t = 6, 2, 32
    batch = {
        "x": torch.randn(b, c, t, D),
        "mask": torch.ones(b, t, dtype=torch.bool),
        "label": torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]),
    }
    batch["mask"][0, 3:] = False  # a short abnormal bag (T < k for top-k heads)
    batch["x"][:3, :, 10:14] += 3.0  # a planted anomaly
    if cfg.model.get("normal_only"):  # unsupervised heads only ever see normal bags
        batch["label"] = torch.zeros(b)
    before = {k: v.detach().clone() for k, v in module.head.state_dict().items()}
    if not getattr(module.head, "trainable", True):  # statistics heads (knn, gaussian): fitted, not optimised
        assert optimizer is None and not any(p.requires_grad for p in module.head.parameters())
        module.head.fit_normal(lambda: [batch["x"][3:].reshape(-1, D)])
        changed = [k for k, v in module.head.state_dict().items() if not torch.equal(v, before[k])]
        assert changed, f"model={model}: fitting changed nothing"
        return
    module.train()
    loss, parts = module.objective(module(batch["x"], batch["mask"]), batch)
    assert set(parts) == set(cfg.model.objective.terms)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    changed = [k for k, v in module.head.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, f"model={model}: no parameter changed after one step"
    grads = [p.grad for p in module.head.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
