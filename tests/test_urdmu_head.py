"""URDMUHead and UR-DMU's losses (docs/heads.md, UR-DMU): layers as in the official code, the GL-MHSA and memory
units against formulas written here, each loss term analytically, and the whole objective against a
re-implementation of the official training forward and ``AD_Loss`` written in this file."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from vadmil.errors import VadmilError
from vadmil.heads.output import HeadOutput
from vadmil.heads.urdmu import GlobalLocalAttention, MemoryUnit, URDMUHead, local_affinity
from vadmil.losses.memory import (
    LatentKLLoss,
    MemoryBCELoss,
    MemoryTripletLoss,
    ReadDistanceLoss,
    UncertainTopKBCELoss,
)
from vadmil.training.module import MILModule

SMALL = dict(dim=16, heads=2, dim_head=8, mlp_dim=16, slots=(20, 20), scorer_hidden=8)


def test_layers_follow_the_official_code():
    head = URDMUHead(1024)
    assert (head.embed.in_channels, head.embed.out_channels, head.embed.kernel_size) == (1024, 512, (3,))
    assert len(head.encoder.attn) == 2
    attn = head.encoder.attn[0]
    assert attn.to_qkvt.weight.shape == (4 * 4 * 128, 512) and attn.to_qkvt.bias is None
    assert attn.to_out[0].weight.shape == (512, 2 * 4 * 128)
    assert head.abnormal_memory.memory.shape == head.normal_memory.memory.shape == (60, 512)
    assert head.abnormal_memory.k == 60 // 16 + 1
    assert [(m.in_features, m.out_features) for m in head.scorer if isinstance(m, nn.Linear)] == [
        (1024, 128), (128, 1)
    ]  # fmt: skip
    assert {m.p for m in head.modules() if isinstance(m, nn.Dropout)} == {0.5}
    bound = 512**-0.5
    assert float(head.normal_memory.memory.detach().abs().max()) <= bound


def _official_local(n):
    """translayer.py: attn2 = exp(-|i - j| / e) over positions 1..n, then attn2 / attn2.sum(-1)."""
    pos = torch.linspace(1, n, n)
    attn2 = torch.exp(-torch.abs(pos * torch.ones(n) - pos.view(-1, 1)) / math.e)
    return attn2 / attn2.sum(-1)


@pytest.mark.parametrize("n", [1, 2, 9])
def test_local_attention_matches_the_code_and_rows_option_sums_to_one(n):
    mask = torch.ones(1, n, dtype=torch.bool)
    assert torch.allclose(local_affinity(mask, "code")[0], _official_local(n), atol=1e-6)
    rows = local_affinity(mask, "rows")[0]
    assert torch.allclose(rows.sum(-1), torch.ones(n), atol=1e-6)
    if n > 2:
        assert not torch.allclose(local_affinity(mask, "code")[0].sum(-1), torch.ones(n), atol=1e-3)


def test_local_attention_of_a_padded_video_equals_the_video_alone():
    mask = torch.tensor([[True] * 5 + [False] * 4])
    for norm in ("code", "rows"):
        padded = local_affinity(mask, norm)[0]
        assert torch.allclose(padded[:5, :5], local_affinity(mask[:, :5], norm)[0], atol=1e-6)
        assert float(padded[:, 5:].abs().max()) == 0.0


def _official_attention(attn: GlobalLocalAttention, x):
    """translayer.Attention.forward written out (no padding)."""
    b, n, _ = x.shape
    q, k, v, t = (p.reshape(b, n, attn.heads, -1).transpose(1, 2) for p in attn.to_qkvt(x).chunk(4, dim=-1))
    attn1 = (q @ k.transpose(-1, -2) * attn.scale).softmax(-1)
    attn2 = _official_local(n)[None, None].repeat(b, attn.heads, 1, 1)
    out = torch.cat([attn1 @ v, attn2 @ t], dim=-1).transpose(1, 2).reshape(b, n, -1)
    return attn.to_out(out)


def test_gl_mhsa_matches_the_official_forward_and_ignores_padding():
    torch.manual_seed(0)
    attn = GlobalLocalAttention(16, heads=2, dim_head=8, dropout=0.0).eval()
    x = torch.randn(2, 7, 16)
    full = torch.ones(2, 7, dtype=torch.bool)
    assert torch.allclose(attn(x, full), _official_attention(attn, x), atol=1e-5)
    padded = torch.cat([x[:1], torch.randn(1, 3, 16) * 50], dim=1)  # garbage after the real 7 snippets
    mask = torch.tensor([[True] * 7 + [False] * 3])
    assert torch.allclose(attn(padded, mask)[0, :7], attn(x[:1], full[:1])[0], atol=1e-5)


def test_memory_read_and_score_against_the_formula():
    unit = MemoryUnit(slots=3, dim=4)
    with torch.no_grad():
        unit.memory.copy_(torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 4.0]]))
    x = torch.tensor([[[1.0, 0, 0, 0], [0, 0, 0, 0]]])  # [1, 2, 4]
    score, read = unit(x)
    att = torch.sigmoid(torch.tensor([[2.0, 0, 0], [0, 0, 0]]) / 2.0)  # x·Mᵀ / √4
    assert unit.k == 1  # 3 // 16 + 1: the score is the largest attention
    assert torch.allclose(score[0], att.max(dim=-1).values)
    assert torch.allclose(read[0], att @ unit.memory.detach())
    assert torch.allclose(read[0, 1], torch.tensor([1.0, 1.0, 0, 2.0]))  # x = 0: every slot at 0.5


def test_training_adds_the_loss_inputs_and_sampling_is_optional():
    torch.manual_seed(0)
    x, mask = torch.randn(3, 9, 12), torch.ones(3, 9, dtype=torch.bool)
    head = URDMUHead(12, dropout=0.0, **SMALL)
    out = head.eval()(x, mask)
    assert out.aux is None and out.features.shape == (3, 9, 16)
    trained = head.train()(x, mask)
    assert torch.allclose(
        trained.scores, out.scores, atol=1e-6
    )  # without dropout, μ scores are the test scores
    assert not torch.allclose(trained.aux["normal_scores"], out.scores)  # sampled normal read
    for name in ("abnormal_attention", "normal_attention", "normal_scores"):
        assert trained.aux[name].shape == (3, 9)
    for name in ("abnormal_read", "normal_read", "normal_mu", "normal_logvar"):
        assert trained.aux[name].shape == (3, 9, 16)
    head.sample_normal = False
    assert torch.allclose(head(x, mask).aux["normal_scores"], out.scores, atol=1e-6)


def _folded(b=4, c=2, t=6, e=3, **aux):
    out = HeadOutput(scores=torch.full((b, c, t), 0.5), features=torch.ones(b, c, t, e), aux=aux)
    return out


def test_memory_bce_analytic():
    b, c, t = 4, 2, 6
    half = torch.full((b, c, t), 0.5)
    out = _folded(abnormal_attention=half, normal_attention=half)
    batch = {"label": torch.tensor([0.0, 0.0, 1.0, 1.0]), "mask": torch.ones(b, t, dtype=torch.bool)}
    assert torch.allclose(MemoryBCELoss()(out, batch), torch.tensor(4 * math.log(2)))
    # abnormal bags recognised by the abnormal memory, normal bags by the normal memory: near zero
    a_att = torch.zeros(b, c, t)
    a_att[2:, :, 0] = 1.0
    n_att = torch.ones(b, c, t)
    n_att[2:, :, 1] = 0.0
    good = _folded(abnormal_attention=a_att, normal_attention=n_att)
    assert float(MemoryBCELoss()(good, batch)) < 1e-3
    only_normal = {"label": torch.zeros(b), "mask": batch["mask"]}
    assert torch.allclose(MemoryBCELoss()(out, only_normal), torch.tensor(2 * math.log(2)))


def test_kl_analytic_and_padding():
    b, c, t, e = 2, 3, 4, 5
    mu, logvar = torch.ones(b, c, t, e), torch.zeros(b, c, t, e)  # KL per element: ½ μ² = ½
    batch = {"label": torch.tensor([0.0, 1.0]), "mask": torch.ones(b, t, dtype=torch.bool)}
    out = _folded(b, c, t, e, normal_mu=mu, normal_logvar=logvar)
    assert torch.allclose(LatentKLLoss("code")(out, batch), torch.tensor(0.5 * t))  # summed over time
    assert torch.allclose(LatentKLLoss("latent")(out, batch), torch.tensor(0.5 * e))  # summed over channels
    batch["mask"][0, 2:] = False
    out.aux["normal_mu"][0, :, 2:] = 1e3  # padding values change nothing, even overflowing ones
    out.aux["normal_logvar"][0, :, 2:] = 1e4
    assert torch.allclose(LatentKLLoss("code")(out, batch), torch.tensor(0.5 * 2))
    assert torch.allclose(LatentKLLoss("latent")(out, batch), torch.tensor(0.5 * e))
    zero = _folded(b, c, t, e, normal_mu=torch.zeros(b, c, t, e), normal_logvar=torch.zeros(b, c, t, e))
    assert float(LatentKLLoss()(zero, batch)) == 0.0
    with pytest.raises(VadmilError, match="reduce"):
        LatentKLLoss("sum")


def test_triplet_analytic():
    b, c, t, e = 2, 1, 4, 2
    x = torch.zeros(b, c, t, e)
    x[0, 0, :, 0] = 1.0  # normal bag: all along axis 0
    x[1, 0, 0] = torch.tensor([0.0, 1.0])  # abnormal bag: snippet 0 along axis 1 (abnormal memory's top)
    x[1, 0, 1:] = torch.tensor([1.0, 0.0])  # the rest like the normal bag (normal memory's top)
    a_att = torch.zeros(b, c, t)
    a_att[1, 0, 0] = 1.0
    n_att = torch.ones(b, c, t)
    n_att[1, 0, 0] = 0.0
    out = HeadOutput(scores=torch.zeros(b, c, t), features=x, aux={"abnormal_attention": a_att,
                                                                    "normal_attention": n_att})  # fmt: skip
    batch = {"label": torch.tensor([0.0, 1.0]), "mask": torch.ones(b, t, dtype=torch.bool)}
    # anchor = positive = (1, 0), negative = (0, 1): max(0, 0 − √2 + m)
    assert torch.allclose(
        MemoryTripletLoss(margin=2.0)(out, batch), torch.tensor(2 - math.sqrt(2)), atol=1e-5
    )
    assert float(MemoryTripletLoss(margin=1.0)(out, batch)) == 0.0


def test_read_distance_analytic():
    b, c, t, e = 2, 1, 3, 2
    reads = torch.zeros(b, c, t, e)
    reads[1, 0, 0] = torch.tensor([3.0, 4.0])  # the abnormal bag's top abnormal read, norm 5
    att = torch.zeros(b, c, t)
    att[1, 0, 0] = 1.0
    n_read = torch.zeros(b, c, t, e)
    n_read[0, 0, :] = torch.tensor([1.0, 0.0])  # the normal bag's sampled normal read, norm 1
    out = _folded(b, c, t, e, abnormal_read=reads, normal_read=n_read, abnormal_attention=att,
                  normal_attention=torch.ones(b, c, t))  # fmt: skip
    batch = {"label": torch.tensor([0.0, 1.0]), "mask": torch.ones(b, t, dtype=torch.bool)}
    assert torch.allclose(ReadDistanceLoss(margin=100.0)(out, batch), torch.tensor(100 - 5 + 1.0))
    assert float(ReadDistanceLoss(margin=3.0)(out, batch)) == 0.0


def test_losses_without_the_heads_reads_say_what_is_missing():
    out = HeadOutput(scores=torch.zeros(2, 1, 3), features=torch.zeros(2, 1, 3, 2))
    batch = {"label": torch.tensor([0.0, 1.0]), "mask": torch.ones(2, 3, dtype=torch.bool)}
    with pytest.raises(VadmilError, match="URDMUHead"):
        MemoryBCELoss()(out, batch)


def _official_step(head: URDMUHead, x, label):
    """model.WSAD's training forward + train.AD_Loss, written out for bags [b, n, t, d], normal bags first."""
    b, n, t, d = x.shape
    z = head.embed(x.reshape(b * n, t, d).transpose(1, 2)).relu().transpose(1, 2)
    z = head.encoder(z, torch.ones(b * n, t, dtype=torch.bool))
    half = b * n // 2
    n_x, a_x = z[:half], z[half:]
    a_att, a_aug = head.abnormal_memory(a_x)
    n_aatt, n_aaug = head.normal_memory(a_x)
    a_natt, a_naug = head.abnormal_memory(n_x)
    n_att, n_aug = head.normal_memory(n_x)
    k = t // 16 + 1

    def pick(feats, att):
        index = att.topk(k, dim=-1).indices
        return (
            feats.gather(1, index[..., None].expand(-1, -1, feats.shape[-1]))
            .mean(1)
            .reshape(b // 2, n, -1)
            .mean(1)
        )

    negative, anchor, positive = pick(a_x, a_att), pick(n_x, n_att), pick(a_x, n_aatt)
    triplet = nn.TripletMarginLoss(margin=1)(F.normalize(anchor, dim=-1), F.normalize(positive, dim=-1),
                                             F.normalize(negative, dim=-1))  # fmt: skip
    mu, var = head.encoder_mu(n_aug), head.encoder_var(n_aug)
    n_aug_new = mu + torch.exp(var).sqrt() * 0.0  # the test makes σ negligible: z = μ
    anchor_new = pick(n_aug_new, n_att)
    a_aug_new = head.encoder_mu(a_aug)
    negative_new = pick(a_aug_new, a_att)
    kl = torch.mean(-0.5 * torch.sum(1 + var - mu**2 - var.exp(), dim=1))
    distance = torch.relu(100 - negative_new.norm(dim=-1) + anchor_new.norm(dim=-1)).mean()
    read = torch.cat([n_aug_new + head.encoder_mu(a_naug), a_aug_new + head.encoder_mu(n_aaug)], dim=0)
    frame = torch.sigmoid(head.scorer(torch.cat([z, read], dim=-1))).reshape(b, n, -1).mean(1)
    bce = nn.BCELoss()

    def crop_mean(att):
        return att.reshape(b // 2, n, -1).mean(1)

    anomaly = bce(frame.topk(k, dim=-1).values.mean(-1), label)
    p_anomaly = bce((1 - crop_mean(n_aatt)).topk(k, dim=-1).values.mean(-1), torch.ones(b // 2))
    a_loss = bce(crop_mean(a_att).topk(k, dim=-1).values.mean(-1), torch.ones(b // 2))
    n_loss = bce(crop_mean(n_att), torch.ones(b // 2, t))
    a_nloss = bce(crop_mean(a_natt), torch.zeros(b // 2, t))
    return {"bce": anomaly, "memory": a_loss + p_anomaly + n_loss + a_nloss, "triplet": triplet, "kl": kl,
            "distance": distance}  # fmt: skip


@pytest.mark.parametrize("crops", [1, 3])
def test_objective_matches_the_official_training_step(crops):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from vadmil.commands.base import config_dir

    torch.manual_seed(0)
    head = URDMUHead(12, dropout=0.0, **SMALL)
    with torch.no_grad():  # σ ≈ e⁻¹⁵: the sampled read is μ, so both sides see the same z
        head.encoder_var.weight.zero_()
        head.encoder_var.bias.fill_(-30.0)
    objective = instantiate(OmegaConf.load(f"{config_dir()}/model/objective/urdmu.yaml"))
    module = MILModule(head, objective).train()
    b, t = 4, 40
    x = torch.randn(b, crops, t, 12)
    x[2:, :, 5:9] += 2.0
    label = torch.tensor([0.0, 0.0, 1.0, 1.0])
    batch = {"x": x, "mask": torch.ones(b, t, dtype=torch.bool), "label": label}
    total, parts = module.objective(module(x, batch["mask"]), batch)
    reference = _official_step(head, x, label)
    weights = {"bce": 1.0, "memory": 0.1, "triplet": 0.1, "kl": 1e-3, "distance": 1e-4}
    for name, value in reference.items():
        assert torch.allclose(parts[name], weights[name] * value, rtol=1e-4, atol=1e-6), name
    assert torch.allclose(total, sum(weights[k] * v for k, v in reference.items()), rtol=1e-4)


@pytest.mark.parametrize("t", [1, 7, 300])
@pytest.mark.parametrize("crops", [1, 5, 10])
def test_every_loss_is_finite_for_any_length_and_crop_count(t, crops):
    torch.manual_seed(0)
    objective_terms = [UncertainTopKBCELoss(), MemoryBCELoss(), MemoryTripletLoss(), LatentKLLoss(),
                       ReadDistanceLoss()]  # fmt: skip
    module = MILModule(URDMUHead(8, **SMALL)).train()
    mask = torch.ones(2, t, dtype=torch.bool)
    mask[1, (t + 1) // 2 :] = False
    batch = {"x": torch.randn(2, crops, t, 8), "mask": mask, "label": torch.tensor([0.0, 1.0])}
    out = module(batch["x"], mask)
    assert out.aux["normal_read"].shape == (2, crops, t, 16)
    losses = [term(out, batch) for term in objective_terms]
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses)
    sum(losses).backward()


def test_padding_values_do_not_change_any_loss():
    torch.manual_seed(0)
    head = URDMUHead(8, dropout=0.0, sample_normal=False, **SMALL)
    module = MILModule(head).train()
    t = 20
    mask = torch.ones(4, t, dtype=torch.bool)
    mask[0, 9:] = False
    mask[3, 13:] = False
    x = torch.randn(4, 2, t, 8)
    batch = {"mask": mask, "label": torch.tensor([0.0, 0.0, 1.0, 1.0])}
    terms = [UncertainTopKBCELoss(), MemoryBCELoss(), MemoryTripletLoss(), LatentKLLoss("code"),
             LatentKLLoss("latent"), ReadDistanceLoss()]  # fmt: skip
    clean = [float(term(module(x, mask), batch).detach()) for term in terms]
    noisy_x = x.clone()
    noisy_x[0, :, 9:] = 1e3
    noisy_x[3, :, 13:] = -1e3
    noisy = [float(term(module(noisy_x, mask), batch).detach()) for term in terms]
    assert clean == pytest.approx(noisy, rel=1e-5, abs=1e-6)


def _compose(*overrides):
    from hydra import compose, initialize_config_dir

    from vadmil.commands.base import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", list(overrides))


def test_paper_protocol_comes_from_the_experiment_config():
    cfg = _compose("experiment=urdmu_ucf_crime")
    assert cfg.model.name == "urdmu" and cfg.dataset.name == "ucf_crime"
    assert (cfg.data.n_segments, cfg.data.crops, cfg.data.batch_size) == (200, "independent", 128)
    assert (cfg.model.optimizer.lr, cfg.model.optimizer.weight_decay, cfg.trainer.max_steps) == (
        1e-4,
        5e-5,
        3000,
    )
    assert (cfg.model.head.dim, cfg.model.head.dim_head, cfg.model.head.mlp_dim) == (512, 128, 512)
    assert _compose("experiment=urdmu_xd_violence").dataset.name == "xd_violence"


def test_the_demo_sweep_narrows_the_head_and_nothing_else_does():
    demo = _compose("model=urdmu", "sweep=demo", "dataset.store=s.h5", "dataset.annotations.path=m.json")
    assert (demo.model.head.dim, demo.model.head.dim_head, demo.model.head.mlp_dim) == (128, 32, 128)
    plain = _compose("model=urdmu")
    assert (plain.model.head.dim, plain.model.head.dim_head, plain.model.head.mlp_dim) == (512, 128, 512)


def test_fold_reshapes_the_aux_tensors_bag_major():
    x = torch.arange(6.0).reshape(6, 1).expand(6, 4)  # [B·C, T], B = 3, C = 2
    out = HeadOutput(scores=x, aux={"a": x, "b": x[..., None].expand(6, 4, 5)}).fold(3, 2)
    assert out.aux["a"].shape == (3, 2, 4) and out.aux["b"].shape == (3, 2, 4, 5)
    assert out.aux["a"][1, 0, 0] == 2.0 and out.aux["b"][2, 1, 0, 0] == 5.0
    assert HeadOutput(scores=x).fold(3, 2).aux is None


def test_the_leaderboard_and_the_demo_discover_it():
    from vadmil.commands.catalog import experiment_methods, experiment_shorthands, sweep_heads

    assert "urdmu" in sweep_heads() and "urdmu" in experiment_methods()
    assert experiment_shorthands()["urdmu_ucf_crime"] == ("urdmu", "ucf_crime")
    assert experiment_shorthands()["urdmu_xd_violence"] == ("urdmu", "xd_violence")
