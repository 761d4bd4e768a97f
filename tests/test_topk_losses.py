"""Top-k selection, top-k BCE, RTFM's magnitude loss and DTED's separation term (docs/methods.md §4–6; docs/heads.md): analytic cases,
plain-Python references written here, and RTFM's whole objective against a straightforward reimplementation."""

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vadmil.errors import VadmilError
from vadmil.heads.output import HeadOutput
from vadmil.losses.magnitude import FeatureMagnitudeLoss
from vadmil.losses.objective import Objective
from vadmil.losses.separation import MeanSeparationLoss
from vadmil.losses.topk import TopKBCELoss, TopKSelector

CONF = Path(__file__).resolve().parents[1] / "conf"


def _mask(lengths, t):
    return torch.tensor([[i < n for i in range(t)] for n in lengths])


def _case(seed, labels=(1, 1, 1, 0, 0, 0), c=3, t=9, e=5, lengths=(9, 2, 5, 9, 1, 7)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(labels), c, t, generator=g, dtype=torch.float64)
    features = torch.randn(len(labels), c, t, e, generator=g, dtype=torch.float64) * 3
    out = HeadOutput(
        scores=torch.sigmoid(logits), logits=logits, magnitudes=features.norm(dim=-1), features=features
    )
    batch = {"label": torch.tensor(labels, dtype=torch.float64), "mask": _mask(lengths, t)}
    return out, batch


def _reference_topk(keys, lengths, k=None, divisor=None):
    """Per video: the indices of the k largest keys among its real snippets (plain Python)."""
    chosen = []
    for row, n in zip(keys.tolist(), lengths, strict=True):
        kk = min(k if k is not None else n // divisor + 1, n)
        chosen.append(sorted(range(n), key=lambda i: -row[i])[:kk])
    return chosen


def _as_sets(out):
    return [
        set(i for i, v in zip(idx, ok, strict=True) if v)
        for idx, ok in zip(out.topk_index.tolist(), out.topk_valid.tolist(), strict=True)
    ]


@pytest.mark.parametrize("seed", range(3))
def test_fixed_k_selection_by_crop_averaged_magnitude(seed):
    out, batch = _case(seed)
    lengths = batch["mask"].sum(1).tolist()
    sel = TopKSelector(k=3, rank_by="magnitudes").eval()(out, batch)
    assert _as_sets(sel) == [set(c) for c in _reference_topk(out.magnitudes.mean(1), lengths, k=3)]
    assert sel.topk_valid.sum(1).tolist() == [min(3, n) for n in lengths]  # T < k selects what there is


def test_k_from_the_length_as_in_hlnet():
    out, batch = _case(0, t=40, lengths=(40, 15, 16, 33, 1, 32))
    lengths = batch["mask"].sum(1).tolist()
    sel = TopKSelector(k=None, k_divisor=16, rank_by="logits")(out, batch)
    assert sel.topk_valid.sum(1).tolist() == [n // 16 + 1 for n in lengths]
    assert _as_sets(sel) == [set(c) for c in _reference_topk(out.logits.mean(1), lengths, divisor=16)]


def test_selection_dropout_randomises_only_while_training():
    out, batch = _case(0, t=32, lengths=(32,) * 6)
    selector = TopKSelector(k=3, dropout=0.7)
    torch.manual_seed(0)
    picks = {tuple(map(tuple, selector.train()(out, batch).topk_index.tolist())) for _ in range(5)}
    assert len(picks) > 1
    evals = {tuple(map(tuple, selector.eval()(out, batch).topk_index.tolist())) for _ in range(3)}
    assert len(evals) == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(k=3, k_divisor=16), "exactly one of k"),
    (dict(k=None), "exactly one of k"),
    (dict(k=0), "must be >= 1"),
    (dict(rank_by="energy"), "unknown top-k rank_by"),
])  # fmt: skip
def test_selector_configuration_errors(kwargs, message):
    with pytest.raises(VadmilError, match=message):
        TopKSelector(**kwargs)


def test_losses_without_a_selection_say_what_is_missing():
    out, batch = _case(0)
    with pytest.raises(VadmilError, match="give the objective a selector"):
        TopKBCELoss()(out, batch)
    with pytest.raises(VadmilError, match="rank_by"):
        TopKSelector(k=3)(HeadOutput(scores=out.scores), batch)


@pytest.mark.parametrize("aggregate", ["scores", "logits"])
def test_topk_bce_against_a_plain_computation(aggregate):
    out, batch = _case(1)
    sel = TopKSelector(k=3).eval()(out, batch)
    value = TopKBCELoss(aggregate)(sel, batch)
    total = 0.0
    for b, (idx, ok) in enumerate(zip(sel.topk_index.tolist(), sel.topk_valid.tolist(), strict=True)):
        picks = [i for i, v in zip(idx, ok, strict=True) if v]
        if aggregate == "scores":
            p = sum(float(out.scores[b, :, i].mean()) for i in picks) / len(picks)
        else:
            p = 1 / (1 + math.exp(-sum(float(out.logits[b, :, i].mean()) for i in picks) / len(picks)))
        y = float(batch["label"][b])
        total += -(y * math.log(p) + (1 - y) * math.log(1 - p))
    assert float(value) == pytest.approx(total / 6, rel=1e-6)


def test_topk_bce_is_near_zero_for_confident_correct_bags():
    scores = torch.tensor([[[0.999999] * 4], [[1e-6] * 4]], dtype=torch.float64)
    out = HeadOutput(scores=scores)
    batch = {"label": torch.tensor([1.0, 0.0])}
    assert float(TopKBCELoss()(TopKSelector(k=3, rank_by="scores")(out, batch), batch)) < 1e-5


def _reference_magnitude(out, batch, margin, form):
    """Plain loops: per crop, mean selected feature, its norm; pair abnormal i with normal i."""
    labels = batch["label"].tolist()
    sel_sets = [
        [i for i, v in zip(idx, ok, strict=True) if v]
        for idx, ok in zip(out.topk_index.tolist(), out.topk_valid.tolist(), strict=True)
    ]
    norms = []
    for b in range(len(labels)):
        per_crop = []
        for c in range(out.features.shape[1]):
            mean = sum(out.features[b, c, i] for i in sel_sets[b]) / len(sel_sets[b])
            per_crop.append(float(mean.norm()))
        norms.append(per_crop)
    a = [norms[b] for b in range(len(labels)) if labels[b] > 0.5]
    n = [norms[b] for b in range(len(labels)) if labels[b] <= 0.5]
    terms = []
    for ai, ni in zip(a, n, strict=False):
        for ac, nc in zip(ai, ni, strict=True):
            terms.append((abs(margin - ac) + nc) ** 2 if form == "code" else max(0.0, margin - ac + nc))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("form", ["code", "paper"])
@pytest.mark.parametrize("labels", [(1, 1, 1, 0, 0, 0), (0, 1, 0, 1, 1, 0), (1, 0, 1, 1, 0, 1)])
def test_magnitude_loss_against_plain_loops(form, labels):
    out, batch = _case(2, labels=labels)
    sel = TopKSelector(k=3).eval()(out, batch)
    value = FeatureMagnitudeLoss(margin=10.0, form=form)(sel, batch)
    assert float(value) == pytest.approx(_reference_magnitude(sel, batch, 10.0, form), rel=1e-6)


def test_magnitude_loss_analytic_cases():
    features = torch.zeros(2, 1, 4, 3, dtype=torch.float64)
    features[0, 0, :, 0] = 100.0  # abnormal bag at exactly the margin, normal bag at zero
    out = HeadOutput(scores=torch.full((2, 1, 4), 0.5), magnitudes=features.norm(dim=-1), features=features)
    batch = {"label": torch.tensor([1.0, 0.0])}
    sel = TopKSelector(k=3).eval()(out, batch)
    assert float(FeatureMagnitudeLoss(100.0, "code")(sel, batch)) == 0.0
    features[0, 0, :, 0] = 150.0  # beyond the margin: the hinge is zero, the code's |m − ‖ā‖| is not
    sel.features[0, 0, :, 0] = 150.0
    assert float(FeatureMagnitudeLoss(100.0, "paper")(sel, batch)) == 0.0
    assert float(FeatureMagnitudeLoss(100.0, "code")(sel, batch)) == pytest.approx(2500.0)
    one_class = {"label": torch.tensor([1.0, 1.0])}
    assert float(FeatureMagnitudeLoss()(sel, one_class)) == 0.0


def test_separation_loss_analytic_and_plain():
    scores = torch.tensor([[[1.0, 1.0, 0.2]], [[0.0, 0.0, 0.9]]], dtype=torch.float64)
    batch = {
        "label": torch.tensor([1.0, 0.0]),
        "mask": torch.tensor([[True, True, False], [True, True, False]]),
    }
    assert float(MeanSeparationLoss()(HeadOutput(scores=scores), batch)) == 0.0  # perfectly separated
    assert float(MeanSeparationLoss()(HeadOutput(scores=torch.full((2, 1, 3), 0.3)), batch)) == pytest.approx(
        1.0
    )
    out, batch = _case(3)
    s, m, y = out.video_scores, batch["mask"], batch["label"]
    mean_a = [float(s[b, i]) for b in range(6) for i in range(9) if y[b] > 0.5 and m[b, i]]
    mean_n = [float(s[b, i]) for b in range(6) for i in range(9) if y[b] < 0.5 and m[b, i]]
    expected = 1 - (sum(mean_a) / len(mean_a) - sum(mean_n) / len(mean_n))
    assert float(MeanSeparationLoss()(out, batch)) == pytest.approx(expected, rel=1e-9)


def _rtfm_code_loss(out, labels, k=3, margin=100.0, alpha=1e-4):
    """RTFM's training loss written the way its official code computes it, on a batch whose first half is
    normal and second half abnormal (as the code stacks them), without the selection dropout."""
    n_half = len(labels) // 2
    scores = out.scores.mean(1)  # [B, T], crop-averaged
    magnitudes = out.magnitudes.mean(1)
    bag_scores, feats = [], []
    for b in range(len(labels)):
        idx = torch.topk(magnitudes[b], k).indices
        bag_scores.append(scores[b, idx].mean())
        feats.append(out.features[b][:, idx].mean(dim=1).norm(dim=-1))  # [C]
    bce = torch.nn.functional.binary_cross_entropy(torch.stack(bag_scores), labels)
    rtfm = torch.stack([((margin - feats[n_half + i]).abs() + feats[i]) ** 2 for i in range(n_half)]).mean()
    abn = scores[n_half:].reshape(-1)
    sparsity = 8e-3 * abn.norm()
    shifted = torch.cat([abn[1:], abn[-1:]])
    smooth = 8e-4 * ((shifted - abn) ** 2).sum()
    return bce + alpha * rtfm + sparsity + smooth


def test_rtfm_objective_matches_the_official_computation():
    torch.manual_seed(0)
    b, c, t, e = 8, 3, 12, 6
    features = torch.randn(b, c, t, e, dtype=torch.float64) * 40
    scores = torch.rand(b, c, t, dtype=torch.float64)
    out = HeadOutput(scores=scores, magnitudes=features.norm(dim=-1), features=features)
    labels = torch.tensor([0.0] * 4 + [1.0] * 4, dtype=torch.float64)
    batch = {"label": labels, "mask": torch.ones(b, t, dtype=torch.bool)}
    cfg = OmegaConf.load(CONF / "model" / "objective" / "rtfm.yaml")
    cfg.selector.dropout = 0.0  # the code's selection mask is random; compare the deterministic part
    cfg.terms.smoothness.loss.per_video = False  # the code's flattened form
    objective = instantiate(cfg)
    assert isinstance(objective, Objective)
    total, parts = objective(out, batch)
    assert set(parts) == {"bce", "magnitude", "sparsity", "smoothness"}
    assert float(total) == pytest.approx(float(_rtfm_code_loss(out, labels)), rel=1e-9)
