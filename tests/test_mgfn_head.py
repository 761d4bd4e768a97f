"""MGFNHead and MGFN's magnitude-contrastive loss (docs/heads.md, MGFN): the code's structure, each block against
a formula written here, the loss against analytic cases and against MGFN's training loss as its official code
computes it. Shapes, padding independence and a training step for the shipped config: tests/test_head_configs.py."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.nn import functional as F

from vadmil.errors import VadmilError
from vadmil.heads.mgfn import ChannelLayerNorm, FocusBlock, GlanceBlock, MGFNHead
from vadmil.heads.output import HeadOutput
from vadmil.losses.magnitude_contrastive import MagnitudeContrastiveLoss
from vadmil.losses.regularizers import SmoothnessLoss, SparsityLoss
from vadmil.losses.topk import TopKSelector

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_structure_follows_the_code():
    head = MGFNHead(2048, dims=(64, 128, 1024))
    assert (head.to_tokens.in_channels, head.to_tokens.out_channels, head.to_tokens.kernel_size) == (
        2048,
        64,
        (3,),
    )
    assert (head.to_magnitude.in_channels, head.to_magnitude.kernel_size) == (1, (3,))
    assert [len(s) for s in head.stages] == [3, 3, 2]
    assert [type(s[0].block).__name__ for s in head.stages] == ["GlanceBlock", "FocusBlock", "FocusBlock"]
    assert [s[0].block.heads for s in head.stages] == [1, 2, 16]  # width // 64
    assert [(t[1].in_channels, t[1].out_channels) for t in head.transitions] == [(64, 128), (128, 1024)]
    focus = head.stages[2][0].block
    assert (focus.local.kernel_size, focus.local.groups, focus.value.bias) == ((5,), 16, None)
    assert head.stages[2][0].ff.net[1].out_channels == 4096  # feed-forward x4
    assert (head.fc.in_features, head.magnitude_ratio) == (1024, 0.1)


def test_channel_layer_norm_is_the_codes_formula():
    torch.manual_seed(0)
    norm = ChannelLayerNorm(6)
    nn.init.normal_(norm.g), nn.init.normal_(norm.b)
    x = torch.randn(2, 6, 5)
    mean, std = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True).sqrt()
    assert torch.allclose(norm(x), (x - mean) / (std + 1e-5) * norm.g + norm.b, atol=1e-6)


def test_glance_block_is_softmax_attention_over_real_snippets():
    torch.manual_seed(0)
    block = GlanceBlock(8, heads=2, head_dim=3)
    x, n = torch.randn(1, 8, 7), 5
    mask = torch.tensor([[i < n for i in range(7)]])
    q, k, v = block.qkv(block.norm(x))[0].chunk(3, dim=0)  # [6, T] each, head h = rows 3h..3h+2
    heads = []
    for h in range(2):
        qh, kh, vh = (m[3 * h : 3 * h + 3, :n] for m in (q, k, v))
        heads.append(vh @ torch.softmax(qh.T @ kh / 3**0.5, dim=-1).T)  # [3, n]
    expected = block.out(torch.cat(heads)[None])[0]
    assert torch.allclose(block(x, mask)[0, :, :n], expected, atol=1e-5)


def test_focus_block_convolves_channel_j_with_head_j_mod_heads_kernel():
    """The code's rearrange('b (c h) t -> (b c) h t') + grouped Conv1d, written channel by channel."""
    torch.manual_seed(0)
    block = FocusBlock(6, heads=3, head_dim=2, kernel_size=5).eval()
    x = torch.randn(2, 6, 9)
    v = block.value(block.norm(x))  # [2, 6, 9]
    rows = [
        F.conv1d(
            v[:, j : j + 1],
            block.local.weight[j % 3 : j % 3 + 1],
            block.local.bias[j % 3 : j % 3 + 1],
            padding=2,
        )
        for j in range(6)
    ]
    expected = block.out(torch.cat(rows, dim=1))
    assert torch.allclose(block(x, torch.ones(2, 9, dtype=torch.bool)), expected, atol=1e-5)


def test_feature_amplification_adds_a_tenth_of_the_convolved_snippet_norm():
    torch.manual_seed(0)
    head = MGFNHead(4, dims=(8, 8, 8), depths=(1, 1, 1)).eval()
    nn.init.zeros_(head.to_tokens.weight), nn.init.zeros_(head.to_tokens.bias)
    nn.init.zeros_(head.to_magnitude.weight), nn.init.zeros_(head.to_magnitude.bias)
    with torch.no_grad():
        head.to_magnitude.weight[:, 0, 1] = 1.0  # centre tap: every channel = the snippet's norm
    seen = {}
    head.stages[0][0].register_forward_pre_hook(lambda _m, args: seen.update(x=args[0]))
    x = torch.randn(1, 6, 4)
    head(x)
    assert torch.allclose(seen["x"][0], 0.1 * x[0].norm(dim=-1).expand(8, 6), atol=1e-6)


def test_magnitudes_are_norms_of_the_layer_normed_features():
    torch.manual_seed(0)
    out = MGFNHead(12, dims=(8, 16, 6)).eval()(torch.randn(3, 7, 12))
    assert out.features.shape == (3, 7, 6)
    assert torch.allclose(out.magnitudes, out.features.norm(dim=-1))
    assert torch.allclose(out.scores, torch.sigmoid(out.logits))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"blocks": ("glance", "look", "focus")}, "unknown MGFN block 'look'"),
     ({"depths": (3, 3)}, "one width, depth and block type per stage"),
     ({"focus_kernel": 4}, "must be odd")],
)  # fmt: skip
def test_configuration_errors_name_the_option(kwargs, message):
    with pytest.raises(VadmilError, match=message):
        MGFNHead(16, **kwargs)


# --- the magnitude-contrastive loss -----------------------------------------------------------------------------


def _selected(features, index, labels, mask=None):
    b, c, t, _ = features.shape
    out = HeadOutput(scores=torch.full((b, c, t), 0.5, dtype=features.dtype), features=features)
    batch = {"label": torch.tensor(labels, dtype=features.dtype)}
    if mask is not None:
        batch["mask"] = mask
    valid = torch.ones_like(index, dtype=torch.bool) if mask is None else mask.gather(1, index)
    out.topk_index, out.topk_valid = index, valid
    return out, batch


def _one_dim(magnitudes, labels):
    """Bags whose single selected snippet has a feature [m, 0] (so its L1 and L2 norms are m), one crop."""
    f = torch.zeros(len(magnitudes), 1, 1, 2, dtype=torch.float64)
    f[:, 0, 0, 0] = torch.tensor(magnitudes, dtype=torch.float64)
    return _selected(f, torch.zeros(len(magnitudes), 1, dtype=torch.long), labels)


def test_contrastive_analytic_cases_with_all_pairs():
    loss = MagnitudeContrastiveLoss(margin=5.0, separate_weight=1.0, pairing="all")
    # normal 1 and 3 (d = 2 -> 4); abnormal 10 is farther than the margin from both -> 0
    assert float(loss(*_one_dim([10, 1, 3], [1, 0, 0]))) == pytest.approx(4.0, abs=1e-4)
    # abnormal 4: d = 3 and 1 from the normals -> hinge (5-3)^2 = 4 and (5-1)^2 = 16, mean 10; plus 4
    assert float(loss(*_one_dim([4, 1, 3], [1, 0, 0]))) == pytest.approx(14.0, abs=1e-4)
    weighted = MagnitudeContrastiveLoss(margin=5.0, separate_weight=1e-3, pairing="all")
    assert float(weighted(*_one_dim([4, 1, 3], [1, 0, 0]))) == pytest.approx(4.0 + 1e-2, abs=1e-4)
    # two abnormal bags 4 and 6 are pulled together (d = 2 -> 4), separated from normal 1 by 3 and 5
    assert float(loss(*_one_dim([4, 6, 1], [1, 1, 0]))) == pytest.approx(4.0 + (4 + 0) / 2, abs=1e-4)


def test_norm_option_l1_is_the_code_and_l2_the_papers_magnitude():
    f = torch.tensor([[[[3.0, -4.0]]], [[[0.0, 0.0]]]], dtype=torch.float64)  # abnormal [3, -4], normal 0
    out, batch = _selected(f, torch.zeros(2, 1, dtype=torch.long), [1, 0])
    for norm, m in (("l1", 7.0), ("l2", 5.0)):
        loss = MagnitudeContrastiveLoss(margin=10.0, separate_weight=1.0, norm=norm)
        assert float(loss(out, batch)) == pytest.approx((10 - m) ** 2, abs=1e-4)


def _code_mc_loss(features, index, n_half, margin=200.0):
    """MGFN's contrastive terms as its code computes them (models/mgfn.py MSNSD, train.py mgfn_loss): normal bags
    first; selected features concatenated crop by crop; torch.norm(p=1) per selected snippet."""
    c, e = features.shape[1], features.shape[3]
    normal, abnormal = features[:n_half], features[n_half:]  # [n, C, T, E]
    idx_n, idx_a = index[:n_half], index[n_half:]

    def select(group, idx):  # the code: for each crop, gather [n, k, E]; concatenate over crops
        rows = [torch.gather(group[:, crop], 1, idx[:, :, None].expand(-1, -1, e)) for crop in range(c)]
        return torch.cat(rows)  # [C·n, k, E]

    def contrastive(o1, o2, label):
        d = F.pairwise_distance(o1, o2, keepdim=True)
        return torch.mean((1 - label) * d.pow(2) + label * torch.clamp(margin - d, min=0.0).pow(2))

    abn, nor = select(abnormal, idx_a), select(normal, idx_n)
    sep = len(abn) / 2
    con = contrastive(abn.norm(p=1, dim=2), nor.norm(p=1, dim=2), 1)
    con_n = contrastive(nor[int(sep) :].norm(p=1, dim=2), nor[: int(sep)].norm(p=1, dim=2), 0)
    con_a = contrastive(abn[int(sep) :].norm(p=1, dim=2), abn[: int(sep)].norm(p=1, dim=2), 0)
    return 0.001 * con + con_a + con_n, abn, nor


@pytest.mark.parametrize("crops", [1, 2, 10])
def test_code_pairing_matches_the_official_computation(crops):
    torch.manual_seed(crops)
    b, t, e = 8, 10, 6
    features = torch.randn(b, crops, t, e, dtype=torch.float64) * 3
    index = torch.stack([torch.randperm(t)[:3] for _ in range(b)])
    out, batch = _selected(features, index, [0] * 4 + [1] * 4)
    expected, _, _ = _code_mc_loss(features, index, 4)
    got = MagnitudeContrastiveLoss(margin=200.0, separate_weight=1e-3, norm="l1", pairing="code")(out, batch)
    assert float(got) == pytest.approx(float(expected), rel=1e-9)


def test_all_pairs_against_a_plain_double_loop():
    torch.manual_seed(0)
    features = torch.randn(5, 2, 6, 3, dtype=torch.float64)
    index = torch.stack([torch.randperm(6)[:3] for _ in range(5)])
    labels = [1, 0, 1, 0, 0]
    out, batch = _selected(features, index, labels)
    m = [[features[i, c, index[i]].norm(p=1, dim=-1) for c in range(2)] for i in range(5)]

    def term(pairs, apart, margin=3.0):
        vals = []
        for i, j in pairs:
            for c in range(2):
                d = (m[i][c] - m[j][c] + 1e-6).norm()
                vals.append(torch.relu(margin - d) ** 2 if apart else d**2)
        return sum(vals) / len(vals)

    ab, no = [0, 2], [1, 3, 4]
    expected = (
        0.5 * term([(a, n) for a in ab for n in no], True)
        + term([(1, 3), (1, 4), (3, 4)], False)
        + term([(0, 2)], False)
    )
    got = MagnitudeContrastiveLoss(margin=3.0, separate_weight=0.5, pairing="all")(out, batch)
    assert float(got) == pytest.approx(float(expected), rel=1e-9)


def test_short_bags_compare_only_their_valid_entries_and_missing_pairs_give_zero():
    f = torch.zeros(2, 1, 4, 2, dtype=torch.float64)
    f[0, 0, :, 0] = torch.tensor([5.0, 1.0, 2.0, 9.0])  # abnormal, long
    f[1, 0, 0, 0] = 1.0  # normal, one real snippet; its padding holds garbage that must not count
    f[1, 0, 1:, 0] = 100.0
    mask = torch.tensor([[True] * 4, [True, False, False, False]])
    index = torch.tensor([[3, 0, 2], [0, 1, 2]])
    out, batch = _selected(f, index, [1, 0], mask)
    loss = MagnitudeContrastiveLoss(margin=10.0, separate_weight=1.0)
    assert float(loss(out, batch)) == pytest.approx((10 - 8) ** 2, abs=1e-4)  # only entry 0 (9 vs 1) counts
    only_abnormal = _selected(f[:1], index[:1], [1])
    assert float(loss(*only_abnormal)) == 0.0


def test_loss_needs_features_and_a_selection():
    out = HeadOutput(scores=torch.rand(2, 1, 4))
    with pytest.raises(VadmilError, match="outputs features"):
        MagnitudeContrastiveLoss()(out, {"label": torch.tensor([1.0, 0.0])})
    out.features = torch.rand(2, 1, 4, 3)
    with pytest.raises(VadmilError, match="selector"):
        MagnitudeContrastiveLoss()(out, {"label": torch.tensor([1.0, 0.0])})


def test_regularisers_pick_the_bags_mgfns_code_uses():
    scores = torch.rand(4, 2, 5, dtype=torch.float64)
    out, labels = HeadOutput(scores=scores), torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    batch = {"label": labels, "mask": torch.ones(4, 5, dtype=torch.bool)}
    s = scores.mean(1)
    assert float(SparsityLoss(norm="l2", bags="normal")(out, batch)) == pytest.approx(
        float(s[:2].reshape(-1).norm())
    )
    assert float(SparsityLoss(norm="l1", bags="all")(out, batch)) == pytest.approx(float(s.sum()))
    smooth_all = float(((s[:, 1:] - s[:, :-1]) ** 2).sum())  # the code's smooth() over every bag, per video
    assert float(SmoothnessLoss(bags="all")(out, batch)) == pytest.approx(smooth_all)
    with pytest.raises(VadmilError, match="unknown sparsity bags 'some'"):
        SparsityLoss(bags="some")


def test_mgfn_objective_matches_the_official_training_loss():
    """bce + 1e-3·(1e-3·con + con_a + con_n) + 8e-4·smooth(all bags) + 8e-3·‖normal scores‖₂, selection fixed."""
    torch.manual_seed(0)
    b, c, t, e = 8, 10, 12, 6
    features = torch.randn(b, c, t, e, dtype=torch.float64) * 5
    scores = torch.rand(b, c, t, dtype=torch.float64)
    out = HeadOutput(scores=scores, magnitudes=features.norm(dim=-1), features=features)
    labels = torch.tensor([0.0] * 4 + [1.0] * 4, dtype=torch.float64)
    batch = {"label": labels, "mask": torch.ones(b, t, dtype=torch.bool)}
    cfg = OmegaConf.load(CONF / "model" / "objective" / "mgfn.yaml")
    cfg.selector.dropout = 0.0  # the code's selection mask is random; compare the deterministic part
    total, parts = instantiate(cfg)(out, batch)
    assert set(parts) == {"bce", "contrastive", "sparsity", "smoothness"}

    video_scores = scores.mean(1)
    index = torch.topk(features.norm(dim=-1).mean(1), 3, dim=1).indices  # MSNSD: crop-averaged magnitudes
    bag = torch.gather(video_scores, 1, index).mean(1)
    bce = F.binary_cross_entropy(bag, labels)
    mc, _, _ = _code_mc_loss(features, index, 4)
    sparse = 8e-3 * torch.mean(torch.norm(video_scores[:4].reshape(-1), dim=0))
    smooth = 8e-4 * ((video_scores[:, 1:] - video_scores[:, :-1]) ** 2).sum()
    assert float(total) == pytest.approx(float(bce + 0.001 * mc + smooth + sparse), rel=1e-9)


def test_selection_uses_the_heads_magnitudes_with_dropout_while_training():
    torch.manual_seed(0)
    head = MGFNHead(8, dims=(64, 64, 32)).train()
    out = head(torch.randn(4, 20, 8)).fold(4, 1)
    batch = {"label": torch.tensor([1.0, 1.0, 0.0, 0.0]), "mask": torch.ones(4, 20, dtype=torch.bool)}
    sel = TopKSelector(k=3, rank_by="magnitudes").eval()(out, batch)
    assert torch.equal(sel.topk_index.sort(1).values, out.magnitudes.mean(1).topk(3).indices.sort(1).values)
