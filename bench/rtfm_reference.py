"""RTFM's training step as its official code computes it (Tian et al., ICCV 2021; github.com/tianyu0207/RTFM,
model.py and train.py), transcribed for the side-by-side benchmark and the equivalence tests.

The network (``Aggregate`` + the non-local block + the scorer), the top-3-by-magnitude selection with its
dropout mask, the RTFM loss (BCE + 1e-4 · magnitude loss with margin 100), sparsity (8e-3) and smoothness (8e-4)
follow the code line by line; only ``.cuda()`` calls and the visdom logging are left out. The batch is the code's:
normal bags first, then abnormal bags, [B, C, T, D].
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import init


def weight_init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv1d, nn.Linear)):
        init.xavier_uniform_(m.weight)
        if m.bias is not None:
            m.bias.data.fill_(0)


class NonLocalBlock1D(nn.Module):
    """The code's ``_NonLocalBlockND`` with dimension=1, sub_sample=False, bn_layer=True."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.inter_channels = in_channels // 2
        self.g = nn.Conv1d(in_channels, self.inter_channels, 1)
        self.W = nn.Sequential(nn.Conv1d(self.inter_channels, in_channels, 1), nn.BatchNorm1d(in_channels))
        nn.init.constant_(self.W[1].weight, 0)
        nn.init.constant_(self.W[1].bias, 0)
        self.theta = nn.Conv1d(in_channels, self.inter_channels, 1)
        self.phi = nn.Conv1d(in_channels, self.inter_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_size = x.size(0)
        g_x = self.g(x).view(batch_size, self.inter_channels, -1).permute(0, 2, 1)
        theta_x = self.theta(x).view(batch_size, self.inter_channels, -1).permute(0, 2, 1)
        phi_x = self.phi(x).view(batch_size, self.inter_channels, -1)
        f = torch.matmul(theta_x, phi_x)
        f_div_c = f / f.size(-1)
        y = torch.matmul(f_div_c, g_x).permute(0, 2, 1).contiguous()
        y = y.view(batch_size, self.inter_channels, *x.size()[2:])
        return self.W(y) + x


class Aggregate(nn.Module):
    def __init__(self, len_feature: int):
        super().__init__()

        def dilated(d: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv1d(len_feature, 512, 3, stride=1, dilation=d, padding=d),
                nn.ReLU(),
                nn.BatchNorm1d(512),
            )

        self.conv_1, self.conv_2, self.conv_3 = dilated(1), dilated(2), dilated(4)
        self.conv_4 = nn.Sequential(
            nn.Conv1d(len_feature, 512, 1, stride=1, padding=0, bias=False), nn.ReLU()
        )
        self.conv_5 = nn.Sequential(
            nn.Conv1d(2048, len_feature, 3, stride=1, padding=1, bias=False),
            nn.ReLU(),
            nn.BatchNorm1d(len_feature),
        )
        self.non_local = NonLocalBlock1D(512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.permute(0, 2, 1)
        residual = out
        out_d = torch.cat((self.conv_1(out), self.conv_2(out), self.conv_3(out)), dim=1)
        out = self.non_local(self.conv_4(out))
        out = self.conv_5(torch.cat((out_d, out), dim=1))
        return (out + residual).permute(0, 2, 1)


class OfficialRTFM(nn.Module):
    """The code's ``Model``: returns (score_abnormal, score_normal, feat_select_abn, feat_select_normal, scores)."""

    def __init__(self, n_features: int, batch_size: int, num_segments: int = 32):
        super().__init__()
        self.batch_size = batch_size
        self.k_abn = self.k_nor = num_segments // 10
        self.Aggregate = Aggregate(len_feature=n_features)
        self.fc1, self.fc2, self.fc3 = nn.Linear(n_features, 512), nn.Linear(512, 128), nn.Linear(128, 1)
        self.drop_out = nn.Dropout(0.7)
        self.relu, self.sigmoid = nn.ReLU(), nn.Sigmoid()
        self.apply(weight_init)

    def _select(self, magnitudes, features, scores, k, n_size, ncrops, t, f):
        select_idx = self.drop_out(torch.ones_like(magnitudes))
        idx = torch.topk(magnitudes * select_idx, k, dim=1)[1]
        idx_feat = idx.unsqueeze(2).expand([-1, -1, features.shape[2]])
        features = features.view(n_size, ncrops, t, f).permute(1, 0, 2, 3)
        total = torch.zeros(0, device=features.device)
        for crop in features:
            total = torch.cat((total, torch.gather(crop, 1, idx_feat)))
        idx_score = idx.unsqueeze(2).expand([-1, -1, scores.shape[2]])
        return torch.mean(torch.gather(scores, 1, idx_score), dim=1), total

    def forward(self, inputs: torch.Tensor):
        bs, ncrops, t, f = inputs.size()
        out = self.drop_out(self.Aggregate(inputs.view(-1, t, f)))
        features = out
        scores = self.drop_out(self.relu(self.fc1(features)))
        scores = self.drop_out(self.relu(self.fc2(scores)))
        scores = self.sigmoid(self.fc3(scores))
        scores = scores.view(bs, ncrops, -1).mean(1).unsqueeze(dim=2)
        normal_features, normal_scores = features[0 : self.batch_size * 10], scores[0 : self.batch_size]
        abnormal_features, abnormal_scores = features[self.batch_size * 10 :], scores[self.batch_size :]
        feat_magnitudes = torch.norm(features, p=2, dim=2).view(bs, ncrops, -1).mean(1)
        nfea_magnitudes, afea_magnitudes = (
            feat_magnitudes[0 : self.batch_size],
            feat_magnitudes[self.batch_size :],
        )
        n_size = nfea_magnitudes.shape[0]
        score_abnormal, feat_select_abn = self._select(
            afea_magnitudes, abnormal_features, abnormal_scores, self.k_abn, n_size, ncrops, t, f
        )
        score_normal, feat_select_normal = self._select(
            nfea_magnitudes, normal_features, normal_scores, self.k_nor, n_size, ncrops, t, f
        )
        return score_abnormal, score_normal, feat_select_abn, feat_select_normal, scores


def official_loss(model: OfficialRTFM, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``train()`` of the code up to ``cost``: RTFM_loss(1e-4, 100) + smooth(8e-4) + sparsity(8e-3)."""
    score_abnormal, score_normal, feat_a, feat_n, scores = model(inputs)
    t = inputs.shape[2]
    scores = scores.view(batch_size * t * 2, -1).squeeze()
    abn_scores = scores[batch_size * t :]
    label = torch.cat((torch.zeros(batch_size), torch.ones(batch_size)), 0).to(inputs)
    score = torch.cat((score_normal, score_abnormal), 0).squeeze()
    loss_cls = nn.functional.binary_cross_entropy(score, label)
    loss_abn = torch.abs(100 - torch.norm(torch.mean(feat_a, dim=1), p=2, dim=1))
    loss_nor = torch.norm(torch.mean(feat_n, dim=1), p=2, dim=1)
    loss_rtfm = torch.mean((loss_abn + loss_nor) ** 2)
    smoothed = torch.zeros_like(abn_scores)
    smoothed[:-1] = abn_scores[1:]
    smoothed[-1] = abn_scores[-1]
    loss_smooth = 8e-4 * torch.sum((smoothed - abn_scores) ** 2)
    loss_sparse = 8e-3 * torch.mean(torch.norm(abn_scores, dim=0))
    return loss_cls + 1e-4 * loss_rtfm + loss_smooth + loss_sparse


def copy_from_vadmil(model: OfficialRTFM, head: nn.Module) -> None:
    """Give the reference the weights of a vadmil ``RTFMHead`` (same shapes, renamed), so both compute the same
    function."""
    mtn, agg = head.mtn, model.Aggregate
    pairs = [(agg.conv_1[0], mtn.pyramid[0]), (agg.conv_2[0], mtn.pyramid[1]), (agg.conv_3[0], mtn.pyramid[2]),
             (agg.conv_1[2], mtn.pyramid_post[0][1]), (agg.conv_2[2], mtn.pyramid_post[1][1]),
             (agg.conv_3[2], mtn.pyramid_post[2][1]), (agg.conv_4[0], mtn.reduce[0]), (agg.conv_5[0], mtn.fuse),
             (agg.conv_5[2], mtn.fuse_post[1]), (agg.non_local.g, mtn.non_local.g),
             (agg.non_local.theta, mtn.non_local.theta), (agg.non_local.phi, mtn.non_local.phi),
             (agg.non_local.W[0], mtn.non_local.out[0]), (agg.non_local.W[1], mtn.non_local.out[1]),
             (model.fc1, head.scorer[0]), (model.fc2, head.scorer[3]), (model.fc3, head.scorer[6])]  # fmt: skip
    for ours, theirs in pairs:
        ours.load_state_dict(theirs.state_dict())
