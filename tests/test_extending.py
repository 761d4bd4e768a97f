"""docs/extending.md, followed literally: a head, a backbone, an import format and a dataset added from outside the
package (a module of their own, a copy of conf/) work with no other edit; and the docs name real files and sections.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from vadmil.commands.base import config_dir
from vadmil.commands.catalog import experiment_methods, sweep_heads
from vadmil.data.store import FeatureStore
from vadmil.training.module import MILModule

CONF = Path(config_dir())
ROOT = CONF.parent
DOCS = ROOT / "docs"

EXTENSION = '''
import numpy as np
import torch
from torch import nn

from vadmil.backbones.base import RANDOM_INIT, FrozenBackbone
from vadmil.data.feature_files import FeatureReader, ImportedVideo, as_float32
from vadmil.heads.output import HeadOutput


class MeanContrastHead(nn.Module):
    """A new head: each snippet against its video's mean. features [N, T, D], mask [N, T] -> scores [N, T]."""

    def __init__(self, in_dim: int, hidden: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features, mask=None):
        if mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        m = mask.unsqueeze(-1).float()
        mean = (features * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1)
        logits = self.net(features - mean).squeeze(-1)
        return HeadOutput(scores=torch.sigmoid(logits), logits=logits)


class TinyBackbone(FrozenBackbone):
    """A new backbone: one 3D convolution, globally pooled. clips [N, 3, T, H, W] -> [N, 8]."""

    def __init__(self, weights=None, random_init=True):
        super().__init__()
        self.name, self.feature_dim, self.clip_len, self.crop_size = "tiny", 8, 4, 32
        self.mean, self.std, self.weights_sha256 = (0.45,) * 3, (0.225,) * 3, RANDOM_INIT
        torch.manual_seed(0)
        self.conv = nn.Conv3d(3, 8, kernel_size=3, padding=1)
        self.freeze()

    def forward(self, clips):
        self.check_clips(clips)
        return self.conv(clips).mean(dim=(2, 3, 4))


class CsvReader(FeatureReader):
    """A new import format: <video>.csv, one snippet a row, D values."""

    format = "csv"
    pattern = "*.csv"

    def _peek(self, path):
        self._same("crops", 1, path)
        self._same("dim", len(path.read_text().splitlines()[0].split(",")), path)

    def load(self, video):
        path = video.features[0]
        arr = np.loadtxt(path, delimiter=",", ndmin=2)
        self._same("dim", arr.shape[1], path)
        return ImportedVideo(video.video_id, as_float32(arr, path)[:, None, :], {}, str(path))
'''


@pytest.fixture()
def extended(tmp_path, monkeypatch) -> Path:
    """A copy of conf/ plus the four additions' configs; their code in a module outside the package."""
    (tmp_path / "my_extension.py").write_text(EXTENSION)
    monkeypatch.syspath_prepend(str(tmp_path))
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    files = {
        "model/head/mean_contrast.yaml": "_target_: my_extension.MeanContrastHead\nhidden: 8\n",
        "model/mean_contrast.yaml": """
            defaults:
              - head: mean_contrast
              - objective: sultani
              - optimizer: adam
              - _self_
            name: mean_contrast
            decay_biases: true
            scheduler: null
        """,
        "backbone/tiny.yaml": "_target_: my_extension.TinyBackbone\nweights: null\nrandom_init: true\n",
        "format/csv.yaml": """
            reader:
              _target_: my_extension.CsvReader
              input: ${input}
            backbone: unknown
            frame_size: unknown
            normalisation: unknown
            tail_policy: drop
            extra_streams: {}
        """,
        "dataset/mine.yaml": """
            name: mine
            store: ???
            feature_dim: null
            end_inclusive: true
            primary_metric: frame_ap_trapz
            annotations:
              path: ???
              train: {_target_: vadmil.data.annotations.load_manifest, path: '${..path}', split: train}
              test: {_target_: vadmil.data.annotations.load_manifest, path: '${..path}', split: test}
        """,
    }
    for name, text in files.items():
        (conf / name).write_text(textwrap.dedent(text).lstrip())
    return conf


def _compose(conf: Path, name: str, overrides: list[str], hydra: bool = False):
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose(name, overrides, return_hydra_config=hydra)
        heads = cfg.hydra.sweeper.params.model if hydra else None  # resolved inside the app, as Hydra does
    return cfg, heads


def test_a_new_head_trains_and_joins_the_sweeps_and_the_demo(extended):
    assert "mean_contrast" in sweep_heads(extended)  # the demo's list
    for sweep in ("leaderboard", "demo"):
        _, heads = _compose(extended, "train", [f"sweep={sweep}"], hydra=True)
        assert "mean_contrast" in heads.split(",")
    cfg, _ = _compose(extended, "train", ["model=mean_contrast"])
    module = MILModule.from_config(cfg, in_dim=6)
    x, mask = torch.randn(4, 2, 10, 6), torch.ones(4, 10, dtype=torch.bool)
    batch = {"x": x, "mask": mask, "label": torch.tensor([1.0, 1.0, 0.0, 0.0])}
    loss, _ = module.objective(module(x, mask), batch)  # what MILModule.training_step minimises
    loss.backward()
    assert torch.isfinite(loss) and module.head.net[0].weight.grad is not None


def test_a_new_backbone_extracts_and_is_recorded(extended, tmp_path):
    from vadmil.extract.builder import build_extractor

    cfg, _ = _compose(extended, "extract", ["backbone=tiny", "input=x", f"output={tmp_path / 's.h5'}"])
    extractor = build_extractor(cfg)
    assert extractor.recipe["backbone"] == "tiny" and extractor.recipe["feature_dim"] == 8
    assert extractor.backbone(torch.rand(2, 3, 4, 32, 32)).shape == (2, 8)


def test_a_new_import_format_fills_a_store(extended, tmp_path):
    from vadmil.data.importing import run_import

    src = tmp_path / "csv"
    src.mkdir()
    for i, t in enumerate((5, 9)):
        np.savetxt(src / f"video{i}.csv", np.random.default_rng(i).standard_normal((t, 3)), delimiter=",")
    out = tmp_path / "out.h5"
    cfg, _ = _compose(extended, "import", ["format=csv", f"input={src}", f"output={out}", "progress=false"])
    result = run_import(cfg)
    assert result["imported"] == 2 and not result["failed"]
    with FeatureStore(out) as store:
        assert store.ids() == ["video0", "video1"] and store.read("video1").shape == (9, 1, 3)


def test_a_new_dataset_works_with_every_method_and_the_leaderboard(extended, tiny_data):
    store, manifest = tiny_data
    where = [f"dataset.store={store}", f"dataset.annotations.path={manifest}"]
    cfg, _ = _compose(extended, "train", ["dataset=mine", *where])
    train, test = instantiate(cfg.dataset.annotations.train), instantiate(cfg.dataset.annotations.test)
    assert train and test
    for method in experiment_methods(extended):
        cfg, _ = _compose(extended, "train", [f"experiment={method}", "dataset=mine", *where])
        assert cfg.dataset.name == "mine"
    cfg, heads = _compose(extended, "train", ["sweep=leaderboard", "dataset=mine", *where], hydra=True)
    assert cfg.hydra.sweep.dir.startswith(str(cfg.paths.runs)) and "mine" in str(cfg.hydra.sweep.dir)


# ---- the docs point at real things ------------------------------------------------------------------------------
def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("doc", ["extending.md", "methods.md"], ids=str)
def test_paths_named_in_the_contributor_docs_exist(doc):
    text = (DOCS / doc).read_text()
    paths = set(re.findall(r"`((?:vadmil|conf|tests|docs)/[^`<>\s]+)`", text))
    assert paths
    missing = [p for p in sorted(paths) if not (ROOT / p).exists()]
    assert not missing, f"docs/{doc} names files that do not exist: {missing}"


def test_section_references_point_at_existing_sections():
    """`docs/methods.md §N`, `docs/heads.md, <Head>` and `README, <Section>` references in code, tests and docs."""
    methods = set(re.findall(r"^## (\d+)\.", (DOCS / "methods.md").read_text(), re.M))
    heads = re.findall(r"^## (.+)$", (DOCS / "heads.md").read_text(), re.M)
    readme = re.findall(r"^##+ (.+)$", (ROOT / "README.md").read_text(), re.M)
    sources = [*ROOT.joinpath("vadmil").rglob("*.py"), *ROOT.joinpath("tests").glob("*.py"), *_doc_files()]
    bad = []
    for path in sources:
        text = path.read_text()
        assert "METHODS" not in text or path.name == "test_extending.py", f"{path}: cite the project's docs"
        for first, rest in re.findall(r"methods\.md §(\d+)(?:[–-](\d+))?", text):
            bad += [f"{path.name}: §{n}" for n in (first, rest) if n and n not in methods]
        for name in re.findall(r"docs/heads\.md, ([A-Z][A-Za-z-]+)", text):
            bad += [f"{path.name}: heads.md, {name}"] if not any(h.startswith(name) for h in heads) else []
        for name in re.findall(r"README, ([A-Z][a-z]+(?: [a-z]+)*)", text):
            bad += [f"{path.name}: README, {name}"] if not any(s.startswith(name) for s in readme) else []
    assert not bad, bad


def _layout() -> dict[str, str]:
    """The README's layout block: entry (``extract/``, ``rundir.py``, ``conf/``) → its description."""
    text = (ROOT / "README.md").read_text()
    block = text.split("Layout (the top level of `vadmil/` reads as the pipeline):", 1)[1].split("```")[1]
    entries: dict[str, str] = {}
    name = None
    for line in block.splitlines()[1:]:
        m = re.match(r"^ {0,2}(\S+)\s+(.*)$", line)
        if m and not line.startswith("   "):
            name = m[1]
            entries[name] = m[2]
        elif name and line.strip():
            entries[name] += " " + line.strip()
    return entries


def test_the_readme_layout_matches_the_tree():
    entries = _layout()
    package = ROOT / "vadmil"
    tree = {f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()}
    tree |= {p.name for p in package.glob("*.py") if p.name != "__init__.py"}
    listed = {name for name in entries if name not in ("vadmil/", "conf/", "docs/", "tests/", "bench/")}
    assert listed == tree, f"README layout vs vadmil/: missing {tree - listed}, gone {listed - tree}"
    for sub in sorted(t for t in tree if t.endswith("/")):
        words = set(re.findall(r"[a-z0-9_]+", entries[sub].lower()))
        modules = {p.stem for p in (package / sub).glob("*.py") if p.stem != "__init__"}
        assert modules <= words, f"README layout, {sub}: not described: {sorted(modules - words)}"
    for folder in ("conf/", "docs/", "tests/", "bench/"):
        assert folder in entries and (ROOT / folder).is_dir()
    groups = {p.name for p in CONF.iterdir() if p.is_dir()}
    assert groups <= set(re.findall(r"([a-z_]+)/", entries["conf/"])), (
        "README layout: a conf/ group is missing"
    )
    docs = {p.stem for p in DOCS.glob("*.md")}
    assert docs <= set(re.findall(r"[a-z_]+", entries["docs/"])), "README layout: a doc is missing"
