"""RTFM's fast path computes the same function as the plain convolutions and as the official code.

The MTN runs its kernel-3 convolutions channels-last with Winograd's F(2, 3); these tests hold it to the plain
``Conv1d`` formulation it replaced (written out here), forward and every gradient, with and without padding, in
training and evaluation mode; and to RTFM's official network and loss, transcribed in ``bench/rtfm_reference.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.nn import functional as F

from tests.batchnorm import randomise_batch_norms
from vadmil.heads.rtfm import MultiScaleTemporalNetwork, RTFMHead
from vadmil.heads.temporal import zero_padding
from vadmil.heads.winograd import conv3_channels_last
from vadmil.training.module import MILModule

ROOT = Path(__file__).resolve().parents[1]


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plain_mtn(mtn: MultiScaleTemporalNetwork, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The MTN with channels-first Conv1d layers, as before the fast path: x [N, T, D] → [N, T, D]."""
    residual = x.transpose(1, 2)
    branches = [post(conv(residual, mask)) for conv, post in zip(mtn.pyramid, mtn.pyramid_post, strict=True)]
    branches.append(mtn.non_local(mtn.reduce(zero_padding(residual, mask)), mask))
    fused = mtn.fuse_post(mtn.fuse(torch.cat(branches, dim=1), mask))
    return (fused + residual).transpose(1, 2)


@pytest.mark.parametrize("dilation", [1, 2, 4, 3])
@pytest.mark.parametrize("length", [1, 2, 7, 8, 13])
def test_winograd_convolution_equals_conv1d_forward_and_backward(dilation, length):
    torch.manual_seed(length)
    x = torch.randn(3, length, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    expected = F.conv1d(x.transpose(1, 2), w, b, padding=dilation, dilation=dilation).transpose(1, 2)
    got = conv3_channels_last(x, w, b, dilation)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(expected)
    for a, e in zip(torch.autograd.grad(got, (x, w, b), grad), torch.autograd.grad(expected, (x, w, b), grad),
                    strict=True):  # fmt: skip
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_mtn_fast_path_equals_the_plain_convolutions(training, padded):
    torch.manual_seed(0)
    mtn = MultiScaleTemporalNetwork(24, channels=8).double().train(training)
    randomise_batch_norms(mtn)
    x = torch.randn(5, 11, 24, dtype=torch.float64)
    mask = torch.ones(5, 11, dtype=torch.bool)
    if padded:
        mask[1, 6:], mask[3, 2:], mask[4, 9:] = False, False, False
    params = list(mtn.parameters())
    outputs, grads, stats = [], [], []
    for forward in (plain_mtn, lambda m, x, k: m(x, k)):
        for m in mtn.modules():  # both start from the same running statistics
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.fill_(0.1), m.running_var.fill_(1.3)
        y = forward(mtn, x, mask)
        outputs.append(y)
        grads.append(torch.autograd.grad((y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum(),
                                         params))  # fmt: skip
        stats.append([b.clone() for b in mtn.buffers() if b.is_floating_point()])
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-10, atol=1e-10)
    for a, e in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-10)
    for a, e in zip(stats[1], stats[0], strict=True):  # training updates the running statistics alike
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_rtfm_head_float32_fast_path_stays_within_rounding_of_the_plain_one():
    torch.manual_seed(0)
    head = RTFMHead(64).train()
    randomise_batch_norms(head)
    x, mask = torch.randn(6, 32, 64), torch.ones(6, 32, dtype=torch.bool)
    fast = head.mtn(x, mask)
    torch.testing.assert_close(fast, plain_mtn(head.mtn, x, mask), rtol=1e-4, atol=1e-4)


def test_the_rtfm_objective_and_head_compute_the_official_loss_and_gradients():
    """Same weights, same batch (normal bags first), selection dropout off: vadmil's RTFM loss and every gradient
    equal the official code's (float64)."""
    reference = _bench_module("rtfm_reference")
    torch.manual_seed(0)
    bags, crops, t, d = 4, 10, 32, 16  # the code hard-codes 10 crops and k = T // 10
    head = RTFMHead(d, dropout=0.0).double()
    objective_cfg = OmegaConf.load(ROOT / "conf" / "model" / "objective" / "rtfm.yaml")
    objective_cfg.selector.dropout = 0.0
    objective_cfg.terms.smoothness.loss.per_video = False  # the code's flattened form
    module = MILModule(head, instantiate(objective_cfg)).train()
    official = reference.OfficialRTFM(d, bags // 2, num_segments=t).double().train()
    official.drop_out.p = 0.0
    reference.copy_from_vadmil(official, head)
    x = torch.randn(bags, crops, t, d, dtype=torch.float64) * 3
    batch = {"x": x, "mask": torch.ones(bags, t, dtype=torch.bool),
             "label": torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)}  # fmt: skip
    ours, _ = module.objective(module(x, batch["mask"]), batch)
    theirs = reference.official_loss(official, x, bags // 2)
    assert float(ours.detach()) == pytest.approx(float(theirs.detach()), rel=1e-10)
    names = [n for n, _ in head.named_parameters()]
    g_ours = dict(zip(names, torch.autograd.grad(ours, list(head.parameters())), strict=True))
    g_theirs = torch.autograd.grad(theirs, list(official.parameters()))
    by_tensor = {id(p): g for p, g in zip(official.parameters(), g_theirs, strict=True)}
    official_names = dict(official.named_parameters())
    pairs = {"mtn.pyramid.0.weight": "Aggregate.conv_1.0.weight", "mtn.fuse.weight": "Aggregate.conv_5.0.weight",
             "mtn.reduce.0.weight": "Aggregate.conv_4.0.weight", "scorer.0.weight": "fc1.weight",
             "mtn.non_local.theta.weight": "Aggregate.non_local.theta.weight",
             "mtn.fuse_post.1.weight": "Aggregate.conv_5.2.weight"}  # fmt: skip
    for ours_name, theirs_name in pairs.items():
        torch.testing.assert_close(
            g_ours[ours_name], by_tensor[id(official_names[theirs_name])], rtol=1e-8, atol=1e-12
        )
