"""Loading local weights files into frozen backbones.

Pretrained weights are never downloaded: a backbone is built either from a local file (``backbone.weights``) or,
for smoke tests, with a seeded random initialisation (``backbone.random_init=true``, recorded in the store as
``weights_sha256 = "random-init"``).

Accepted files (``torch.load(..., weights_only=True)``):

- a plain state dict ``{name: tensor}``;
- a PyTorchVideo model-zoo ``.pyth`` checkpoint ``{"model_state": state_dict, ...}``;
- a Lightning-style checkpoint ``{"state_dict": state_dict, ...}``.

A ``model.`` or ``module.`` prefix carried by every key is stripped. Loading is strict: every tensor of the model
must be in the file with the same shape and the file may hold nothing else, except keys under ``ignore_prefixes``
(layers the backbone discards, such as a classifier's projection), which are dropped from the file first.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from vadmil.errors import VadmilError

_SHOW = 4  # keys listed per kind in an error message
_PREFIXES = ("model.", "module.")
_PROJ = re.compile(r"^blocks\.\d+\.proj\.")  # PyTorchVideo classifier projection (discarded by the backbones)


def resolve_weights(weights: str | Path | None, random_init: bool, name: str) -> Path | None:
    """The weights file to load, or None for a random-init backbone; exactly one of the two must be asked for."""
    if weights in (None, "") and not random_init:
        raise VadmilError(
            f"backbone {name} needs weights: pass backbone.weights=<local file> (pretrained weights are never "
            "downloaded) or backbone.random_init=true for a random-init smoke test (recorded in the store)"
        )
    if weights not in (None, "") and random_init:
        raise VadmilError(
            f"backbone {name} got both backbone.weights={weights} and backbone.random_init=true; "
            "keep one: the weights file, or random_init=true without weights"
        )
    return None if random_init else Path(str(weights)).expanduser()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict held by a weights file (see the module docstring for the accepted layouts)."""
    path = Path(path)
    if not path.is_file():
        raise VadmilError(
            f"weights file {path} does not exist; pass backbone.weights=<path of a local weights file>"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to read is reported as one line
        if isinstance(err, pickle.UnpicklingError) and "unsupported global" in str(err).lower():
            raise VadmilError(
                f"weights file {path} holds Python objects besides tensors, which weights_only loading refuses; "
                "re-save only its state dict with torch.save(model.state_dict(), path)"
            ) from None
        raise VadmilError(
            f"weights file {path} is not a readable PyTorch file ({type(err).__name__}); "
            "pass a state dict saved with torch.save, a .pyth zoo checkpoint or a Lightning .ckpt"
        ) from None
    state = _unwrap(obj)
    if state is None:
        keys = list(obj)[:_SHOW] if isinstance(obj, Mapping) else type(obj).__name__
        raise VadmilError(
            f"weights file {path} holds no state dict (found {keys}); expected {{name: tensor}}, "
            '{"model_state": ...} (.pyth) or {"state_dict": ...} (Lightning)'
        )
    return _strip_prefix(state)


def _unwrap(obj) -> dict[str, torch.Tensor] | None:
    if not isinstance(obj, Mapping):
        return None
    for key in ("model_state", "state_dict"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return dict(obj)
    return None


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_weights(
    model: nn.Module, path: str | Path, name: str | None = None, ignore_prefixes: Iterable[str] = ()
) -> str:
    """Load a local weights file strictly into ``model``; returns the file's sha256.

    ``name`` is the backbone named in error messages; keys under ``ignore_prefixes`` are dropped from the file
    (and may be absent from it).
    """
    path = Path(path)
    name = name or type(model).__name__
    ignore = tuple(ignore_prefixes)
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(ignore)}
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(ignore)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
        raise VadmilError(
            f"weights file {path} does not fit backbone {name}: {', '.join(parts)}; {_looks_like(state)}"
        )
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        shapes = ", ".join(
            f"{k}: file {list(state[k].shape)} vs model {list(expected[k].shape)}" for k in wrong[:_SHOW]
        )
        raise VadmilError(
            f"weights file {path} does not fit backbone {name}: {len(wrong)} tensors have other shapes "
            f"({shapes}{', ...' if len(wrong) > _SHOW else ''}); {_looks_like(state)}"
        )
    model.load_state_dict(state, strict=not ignore)
    return file_sha256(path)


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOW]) + (", ..." if len(keys) > _SHOW else "")


def _looks_like(state: Mapping[str, torch.Tensor]) -> str:
    """Which known backbone the state dict seems to be for, as the end of an error message."""
    names, score = guess_backbone(state)
    if score == 1.0:
        return f"the file looks like weights for {'/'.join(names)}: pick that backbone config or another file"
    if score >= 0.5:
        return f"the file is closest to {'/'.join(names)} ({score:.0%} of tensors match): check the file"
    return "the file matches no backbone vadmil knows: check that it holds weights for this architecture"


def guess_backbone(state: Mapping[str, torch.Tensor]) -> tuple[list[str], float]:
    """(best-matching backbone names, share of tensors matching by name and shape, 1.0 = exact fit).

    Classifier projections are ignored, since the backbones discard them.
    """
    shapes = {k: tuple(v.shape) for k, v in state.items() if not _PROJ.match(k)}
    best: list[str] = []
    best_score = 0.0
    for name, layout in _known_layouts().items():
        same = sum(1 for k, s in layout.items() if shapes.get(k) == s)
        score = same / max(len(set(layout) | set(shapes)), 1)
        if score > best_score + 1e-9:
            best, best_score = [name], score
        elif abs(score - best_score) <= 1e-9 and score > 0:
            best.append(name)
    return best, best_score


@functools.cache
def _known_layouts() -> dict[str, dict[str, tuple[int, ...]]]:
    """{backbone: {key: shape}} of every known backbone, built on the meta device (no memory, fast)."""
    from vadmil.backbones.c3d import C3D
    from vadmil.backbones.pytorchvideo import ARCHS, build_hub_model

    layouts = {}
    with torch.device("meta"):
        for arch in ARCHS:
            model = build_hub_model(arch, seed=None)
            layouts[arch] = {k: tuple(v.shape) for k, v in model.state_dict().items() if not _PROJ.match(k)}
        layouts["c3d"] = {k: tuple(v.shape) for k, v in C3D().state_dict().items()}
    return layouts
