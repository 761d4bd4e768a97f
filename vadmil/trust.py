"""What a config read back from a run dir, a checkpoint or a store may construct: the one gate.

A Hydra config names code: every ``_target_`` is imported and called by ``instantiate``. A config that came from
elsewhere (``<run>/config.yaml``, ``checkpoint["vadmil"]["config"]``, a store's ``extraction_config``) is data, so
before anything in it is instantiated :func:`trusted_config` resolves it and checks that every ``_target_``, at any
depth (inside ``_args_``, lists, ``_partial_`` nodes, ...), names a class or function defined in an allowed
module. Anything else is refused with one line naming the key path and the target.

The check resolves the target itself rather than matching its text, so a path that walks out of an allowed module
through an attribute (``vadmil.rundir.os.system``, ``torch.nn.modules.module.torch.save``) is refused too: every
module on the way and the module that defines the final object must be allowed. Modules outside the allow-list are
never imported. Allowed anywhere: the model parts (``vadmil.heads``, ``vadmil.losses``, ``vadmil.backbones``),
the annotation loaders and feature readers (``vadmil.data.annotations``, ``.manifest``, ``.importers``: they only
read files), ``torch.nn`` and ``torch.optim``. Allowed only under the key where the shipped configs use them, keys
a rebuild never instantiates: the synthetic data generator (a writer) at ``dataset.prepare``, the Lightning loggers
and callbacks (and vadmil's) under ``logger`` and ``callbacks``. ``tests/test_trust.py`` checks that every target
of the shipped ``conf/`` passes.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vadmil.errors import VadmilError

# Modules whose classes and functions a read-back config may name anywhere (a module and its submodules).
ALLOWED_MODULES = (
    "vadmil.heads",
    "vadmil.losses",
    "vadmil.backbones",
    "vadmil.data.annotations",
    "vadmil.data.manifest",
    "vadmil.data.importers",
    "torch.nn",
    "torch.optim",
)
# More allowed only under one key (the key or its children): what the shipped configs use to make data and to log
# during training — writers, trackers. Rebuilding a run (eval, score) never instantiates these keys.
_TRAINING_PARTS = ("vadmil.training.callbacks", "vadmil.training.oracle")
ALLOWED_AT = {
    "dataset.prepare": ("vadmil.data.synthetic.ensure_synthetic",),
    "logger": ("pytorch_lightning.loggers", "lightning.pytorch.loggers", *_TRAINING_PARTS),
    "callbacks": ("pytorch_lightning.callbacks", "lightning.pytorch.callbacks", *_TRAINING_PARTS),
}


def _allowed_at(key: str) -> tuple[str, ...]:
    return tuple(
        m for k, ms in ALLOWED_AT.items() if key == k or key.startswith((f"{k}.", f"{k}[")) for m in ms
    )


def _within(name: str, modules: tuple[str, ...]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def _resolves_inside(target: str, modules: tuple[str, ...]) -> bool:
    """True if ``target`` is a class or function reached only through, and defined in, ``modules``."""
    if not isinstance(target, str) or not _within(target, modules):
        return False
    parts = target.split(".")
    obj, i = None, len(parts)
    while i > 0:  # the longest importable module prefix (inside the allow-list, as the target is)
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            break
        except Exception:  # not a module (ImportError), or not a module name at all
            i -= 1
    if obj is None:
        return False
    for attr in parts[i:]:
        if attr.startswith("__") or not hasattr(obj, attr):
            return False
        obj = getattr(obj, attr)
        if inspect.ismodule(obj) and not _within(obj.__name__, modules):
            return False
    if inspect.ismodule(obj) or not (inspect.isclass(obj) or inspect.isroutine(obj)):
        return False
    defined_in = getattr(obj, "__module__", None) or ""
    return _within(defined_in, modules) or f"{defined_in}.{getattr(obj, '__qualname__', '')}" in modules


def targets(node, path: str = "") -> Iterator[tuple[str, object]]:
    """(key path, target) of every ``_target_`` in a plain container, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield path or "<root>", value
            else:
                yield from targets(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from targets(value, f"{path}[{i}]")


def check_target(key: str, target, source: str) -> None:
    """Refuse ``target`` at ``key`` unless it resolves inside the allow-list (see the module docstring)."""
    modules = ALLOWED_MODULES + _allowed_at(key)
    if not _resolves_inside(target, modules):
        raise VadmilError(
            f"{source}: refusing to build {key} (_target_: {target}): a config read back from a run dir, "
            f"checkpoint or store may only name {', '.join(ALLOWED_MODULES)}; this file was not written by "
            "vadmil as is — use a run dir you trust, or fix the key"
        )


def trusted_config(cfg, source: str) -> DictConfig:
    """``cfg`` (a DictConfig, dict or YAML text read from ``source``) resolved, with every ``_target_`` checked.
    Everything a rebuild instantiates must come from the returned config."""
    try:
        if not isinstance(cfg, DictConfig | ListConfig):
            cfg = OmegaConf.create(cfg)  # YAML text or plain containers: interpolations resolve below
        plain = OmegaConf.to_container(cfg, resolve=True)
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        raise VadmilError(f"{source}: cannot read its config: {' '.join(str(err).split())}") from None
    if not isinstance(plain, dict):
        raise VadmilError(f"{source}: its config is a {type(plain).__name__}, not a mapping of keys")
    for key, target in targets(plain):
        check_target(key, target, source)
    return OmegaConf.create(plain)
