"""MIL losses (docs/methods.md §3, §5) against analytic cases and plain-Python loops written here."""

import itertools
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vadmil.errors import VadmilError
from vadmil.heads.output import HeadOutput
from vadmil.losses.objective import Objective
from vadmil.losses.ranking import MILRankingLoss
from vadmil.losses.regularizers import SmoothnessLoss, SparsityLoss

CONF = Path(__file__).resolve().parents[1] / "conf"
PAIRINGS = ("all", "one_to_one")
REDUCTIONS = ("sum", "mean")
PAIRING_REDUCTION = list(itertools.product(PAIRINGS, REDUCTIONS))


def _out(scores):
    """Folded head output from scores [B, C, T] (or [B, T] → one crop)."""
    scores = torch.as_tensor(scores, dtype=torch.float64)
    return HeadOutput(scores=scores[:, None] if scores.ndim == 2 else scores)


def _batch(labels, lengths=None, t=None):
    batch = {"label": torch.tensor(labels, dtype=torch.float32)}
    if lengths is not None:
        batch["mask"] = torch.tensor([[i < n for i in range(t)] for n in lengths])
    return batch


def _random_case(seed, labels=(1, 0, 1, 0, 0, 1, 1), c=3, t=7):
    """Random scores [B, C, T] in [0, 1] and a batch whose bags have random valid lengths 1..t."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(len(labels), c, t, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, t + 1, (len(labels),), generator=g).tolist()
    return scores, _batch(list(labels), lengths, t)


# ---- plain-Python references ---------------------------------------------------------------------------------
def _crop_mean(scores):
    """[B, C, T] nested lists → per bag, per snippet mean over crops."""
    return [[sum(crop[t] for crop in bag) / len(bag) for t in range(len(bag[0]))] for bag in scores]


def _valid(scores, batch):
    """Per bag: (label, list of its valid crop-averaged scores)."""
    vs = _crop_mean(scores.tolist())
    labels = batch["label"].tolist()
    mask = batch["mask"].tolist() if "mask" in batch else [[True] * len(v) for v in vs]
    return [
        (lab, [s for s, m in zip(v, mk, strict=True) if m])
        for lab, v, mk in zip(labels, vs, mask, strict=True)
    ]


def _ref_ranking(scores, batch, margin=1.0, pairing="all", reduction="sum"):
    bags = _valid(scores, batch)
    a = [max(v) for lab, v in bags if lab == 1]
    n = [max(v) for lab, v in bags if lab == 0]
    if pairing == "all":
        per = [sum(max(0.0, margin - ai + nj) for nj in n) / len(n) for ai in a]
    else:
        per = [max(0.0, margin - a[k] + n[k]) for k in range(min(len(a), len(n)))]
    return sum(per) if reduction == "sum" else sum(per) / len(per)


def _ref_smoothness(scores, batch, per_video=True):
    bags = [v for lab, v in _valid(scores, batch) if lab == 1]
    if per_video:
        return sum((v[t + 1] - v[t]) ** 2 for v in bags for t in range(len(v) - 1))
    flat = [s for v in bags for s in v]
    return sum((flat[i + 1] - flat[i]) ** 2 for i in range(len(flat) - 1))


def _ref_sparsity(scores, batch, norm="l1"):
    flat = [s for lab, v in _valid(scores, batch) if lab == 1 for s in v]
    return sum(flat) if norm == "l1" else math.sqrt(sum(s * s for s in flat))


ALL_LOSSES = [
    MILRankingLoss(),
    MILRankingLoss(pairing="one_to_one", reduction="mean"),
    MILRankingLoss(margin=0.3, pairing="one_to_one"),
    SmoothnessLoss(per_video=True),
    SmoothnessLoss(per_video=False),
    SparsityLoss("l1"),
    SparsityLoss("l2"),
]


# ---- analytic cases --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pairing,reduction", PAIRING_REDUCTION)
def test_ranking_zero_when_abnormal_max_beats_normal_max_by_margin(pairing, reduction):
    # abnormal maxima 0.9, 0.85; normal maxima 0.05, 0.1: every gap >= margin 0.7
    scores = [[0.1, 0.9, 0.2], [0.05, 0.0, 0.0], [0.85, 0.3, 0.1], [0.1, 0.1, 0.0]]
    loss = MILRankingLoss(margin=0.7, pairing=pairing, reduction=reduction)
    assert float(loss(_out(scores), _batch([1, 0, 1, 0]))) == 0.0


@pytest.mark.parametrize("pairing,reduction", PAIRING_REDUCTION)
def test_ranking_equals_margin_per_abnormal_bag_when_scores_equal(pairing, reduction):
    scores = torch.full((4, 2, 5), 0.37)
    loss = MILRankingLoss(margin=1.0, pairing=pairing, reduction=reduction)(
        _out(scores), _batch([0, 1, 1, 0])
    )
    expected = 1.0 if reduction == "mean" else 2.0  # two abnormal bags, each contributes the margin
    assert float(loss) == pytest.approx(expected)


def test_ranking_defaults_are_the_official_code():
    loss = MILRankingLoss()
    assert (loss.margin, loss.pairing, loss.reduction) == (1.0, "all", "sum")


def test_ranking_of_a_single_class_batch_is_zero_and_differentiable():
    scores = torch.rand(3, 1, 4, requires_grad=True)
    loss = MILRankingLoss()(HeadOutput(scores=scores), _batch([1, 1, 1]))
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.equal(scores.grad, torch.zeros_like(scores))


@pytest.mark.parametrize("per_video", [True, False])
def test_smoothness_zero_for_constant_scores(per_video):
    scores = torch.full((4, 2, 6), 0.42)
    assert float(SmoothnessLoss(per_video)(_out(scores), _batch([1, 0, 1, 1]))) == pytest.approx(
        0.0, abs=1e-12
    )


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_sparsity_zero_for_zero_scores(norm):
    scores = torch.zeros(4, 2, 6)
    assert float(SparsityLoss(norm)(_out(scores), _batch([1, 0, 1, 0]))) == 0.0


def test_regularizers_ignore_normal_bags():
    scores = torch.zeros(2, 1, 4)
    scores[1] = torch.tensor([0.0, 1.0, 0.0, 1.0])  # the normal bag is rough and dense
    batch = _batch([1, 0])
    for loss in (SmoothnessLoss(True), SmoothnessLoss(False), SparsityLoss("l1"), SparsityLoss("l2")):
        assert float(loss(_out(scores), batch)) == 0.0, loss


def test_flattened_smoothness_crosses_video_boundaries():
    # Two abnormal bags, each constant: per video there is nothing to smooth; RTFM's flattened form sees the jump
    # 0.2 → 0.9 where one video ends and the next begins. The normal bag between them is left out of both.
    scores = [[0.2, 0.2, 0.2], [0.5, 0.0, 1.0], [0.9, 0.9, 0.9]]
    batch = _batch([1, 0, 1])
    assert float(SmoothnessLoss(per_video=True)(_out(scores), batch)) == 0.0
    assert float(SmoothnessLoss(per_video=False)(_out(scores), batch)) == pytest.approx(0.7**2)
    # the padding of the first bag is skipped by the flattened form as well
    masked = _batch([1, 0, 1], lengths=[2, 3, 3], t=3)
    padded = [[0.2, 0.2, 0.55], [0.5, 0.0, 1.0], [0.9, 0.9, 0.9]]
    assert float(SmoothnessLoss(per_video=False)(_out(padded), masked)) == pytest.approx(0.7**2)


def test_sparsity_l1_and_l2_values():
    scores = [[0.3, 0.4, 0.0], [1.0, 1.0, 1.0]]
    batch = _batch([1, 0])
    assert float(SparsityLoss("l1")(_out(scores), batch)) == pytest.approx(0.7)
    assert float(SparsityLoss("l2")(_out(scores), batch)) == pytest.approx(0.5)


# ---- against plain-Python loops ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pairing,reduction", PAIRING_REDUCTION)
@pytest.mark.parametrize("margin", [1.0, 0.4])
def test_ranking_matches_loops(seed, pairing, reduction, margin):
    scores, batch = _random_case(seed)
    loss = MILRankingLoss(margin=margin, pairing=pairing, reduction=reduction)(_out(scores), batch)
    assert float(loss) == pytest.approx(_ref_ranking(scores, batch, margin, pairing, reduction), abs=1e-12)


def test_ranking_pairing_and_reduction_all_differ():
    scores, batch = _random_case(0)
    values = {
        (p, r): float(MILRankingLoss(pairing=p, reduction=r)(_out(scores), batch))
        for p, r in itertools.product(PAIRINGS, REDUCTIONS)
    }
    assert len({round(v, 9) for v in values.values()}) == 4, values


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("per_video", [True, False])
def test_smoothness_matches_loops(seed, per_video):
    scores, batch = _random_case(seed)
    loss = SmoothnessLoss(per_video=per_video)(_out(scores), batch)
    assert float(loss) == pytest.approx(_ref_smoothness(scores, batch, per_video), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_sparsity_matches_loops(seed, norm):
    scores, batch = _random_case(seed)
    loss = SparsityLoss(norm)(_out(scores), batch)
    assert float(loss) == pytest.approx(_ref_sparsity(scores, batch, norm), abs=1e-12)


def test_no_mask_means_every_snippet_is_valid():
    scores, batch = _random_case(5)
    full = _batch(batch["label"].tolist(), lengths=[scores.shape[-1]] * len(scores), t=scores.shape[-1])
    no_mask = {"label": batch["label"]}
    for loss in ALL_LOSSES:
        assert float(loss(_out(scores), no_mask)) == pytest.approx(float(loss(_out(scores), full))), loss


# ---- masks, order, crops, gradients -------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
@pytest.mark.parametrize("fill", ["random", 0.0, 1.0])
def test_padding_values_do_not_change_any_loss(loss, fill):
    scores, batch = _random_case(3)
    pad = ~batch["mask"]
    assert pad.any()
    changed = scores.clone()
    g = torch.Generator().manual_seed(9)
    new = (
        torch.rand(scores.shape, generator=g, dtype=scores.dtype)
        if fill == "random"
        else torch.full_like(scores, fill)
    )
    changed[pad[:, None, :].expand_as(scores)] = new[pad[:, None, :].expand_as(scores)]
    assert not torch.equal(changed, scores)
    assert float(loss(_out(changed), batch)) == pytest.approx(float(loss(_out(scores), batch)), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_all_pairs_ranking_does_not_depend_on_bag_order(seed):
    scores, batch = _random_case(seed)
    perm = torch.randperm(len(scores), generator=torch.Generator().manual_seed(seed))
    shuffled = {"label": batch["label"][perm], "mask": batch["mask"][perm]}
    for reduction in REDUCTIONS:
        loss = MILRankingLoss(pairing="all", reduction=reduction)
        assert float(loss(_out(scores[perm]), shuffled)) == pytest.approx(float(loss(_out(scores), batch)))


def test_one_to_one_pairs_bags_in_batch_order():
    # abnormal maxima (in batch order) 0.9, 0.2; normal maxima 0.1, 0.8
    scores = [[0.9], [0.1], [0.2], [0.8]]
    loss = MILRankingLoss(margin=0.5, pairing="one_to_one")
    # pairs (0.9, 0.1) → 0, (0.2, 0.8) → 1.1
    assert float(loss(_out(scores), _batch([1, 0, 1, 0]))) == pytest.approx(1.1)
    # swapping the normal bags pairs (0.9, 0.8) → 0.4 and (0.2, 0.1) → 0.4
    assert float(loss(_out([[0.9], [0.8], [0.2], [0.1]]), _batch([1, 0, 1, 0]))) == pytest.approx(0.8)


def test_crops_are_averaged_before_the_bag_max():
    # Abnormal bag: crop 0 peaks at t=0, crop 1 at t=1 → crop means [0.5, 0.5], bag max 0.5 (max-then-mean gives 1).
    scores = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    batch = _batch([1, 0])
    assert float(MILRankingLoss()(_out(scores), batch)) == pytest.approx(0.5)
    # smoothness and sparsity work on crop means too: [0.5, 0.5] is flat and sums to 1
    assert float(SmoothnessLoss()(_out(scores), batch)) == pytest.approx(0.0)
    assert float(SparsityLoss("l1")(_out(scores), batch)) == pytest.approx(1.0)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_gradients_flow_to_the_scores(loss):
    scores, batch = _random_case(1)
    scores = scores.float().requires_grad_(True)
    value = loss(HeadOutput(scores=scores), batch)
    assert value.ndim == 0 and value.requires_grad
    value.backward()
    assert torch.isfinite(scores.grad).all()
    assert scores.grad.abs().sum() > 0
    # padded snippets get no gradient
    pad = ~batch["mask"][:, None, :].expand_as(scores)
    assert torch.equal(scores.grad[pad], torch.zeros_like(scores.grad[pad]))


def test_l2_sparsity_gradient_is_finite_at_zero_scores():
    scores = torch.zeros(2, 1, 3, requires_grad=True)
    SparsityLoss("l2")(HeadOutput(scores=scores), _batch([1, 0])).backward()
    assert torch.isfinite(scores.grad).all()


# ---- the objective ---------------------------------------------------------------------------------------------
def test_objective_parts_are_weighted_and_sum_to_the_total():
    scores, batch = _random_case(2)
    terms = {
        "ranking": {"loss": MILRankingLoss(), "weight": 1.0},
        "smoothness": {"loss": SmoothnessLoss(), "weight": 0.25},
        "sparsity": {"loss": SparsityLoss("l2"), "weight": 3.0},
    }
    objective = Objective(terms)
    total, parts = objective(_out(scores), batch)
    assert list(parts) == ["ranking", "smoothness", "sparsity"]
    for name, term in terms.items():
        expected = term["weight"] * float(term["loss"](_out(scores), batch))
        assert float(parts[name]) == pytest.approx(expected), name
    assert float(total) == pytest.approx(sum(float(p) for p in parts.values()))
    assert total.ndim == 0


def test_objective_weight_defaults_to_one():
    scores, batch = _random_case(2)
    total, parts = Objective({"sparsity": {"loss": SparsityLoss()}})(_out(scores), batch)
    assert float(total) == pytest.approx(float(SparsityLoss()(_out(scores), batch)))


def test_sultani_objective_config_instantiates():
    objective = instantiate(OmegaConf.load(CONF / "model" / "objective" / "sultani.yaml"))
    assert isinstance(objective, Objective)
    assert objective.weights == pytest.approx({"ranking": 1.0, "smoothness": 8e-5, "sparsity": 8e-5})
    ranking, smoothness, sparsity = (objective.losses[k] for k in ("ranking", "smoothness", "sparsity"))
    assert isinstance(ranking, MILRankingLoss)
    assert (ranking.margin, ranking.pairing, ranking.reduction) == (1.0, "all", "sum")
    assert isinstance(smoothness, SmoothnessLoss) and smoothness.per_video
    assert isinstance(sparsity, SparsityLoss) and sparsity.norm == "l1"

    scores, batch = _random_case(4)
    total, parts = objective(_out(scores), batch)
    expected = (
        _ref_ranking(scores, batch)
        + 8e-5 * _ref_smoothness(scores, batch)
        + 8e-5 * _ref_sparsity(scores, batch)
    )
    assert float(total) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda: MILRankingLoss(pairing="pairs"),
        lambda: MILRankingLoss(reduction="max"),
        lambda: SparsityLoss("l3"),
        lambda: Objective({}),
        lambda: Objective({"ranking": {"weight": 1.0}}),
        lambda: Objective({"ranking": {"loss": "vadmil.losses.ranking.MILRankingLoss", "weight": 1.0}}),
    ],
)
def test_invalid_options_raise_vadmil_error(make):
    with pytest.raises(VadmilError):
        make()
