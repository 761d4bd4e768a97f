"""The configs of self-training's stages, and the one thing `train()` does for a stage that it does for no other
run: start from the previous stage's weights (``training.init_from``)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from vadmil.errors import VadmilError
from vadmil.rundir import load_checkpoint


def mil_stage(cfg: DictConfig) -> DictConfig:
    """Stage 1: ``cfg`` trained as a plain MIL run (``training=mil``)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg))
    out.training = {"mode": "mil", "window": cfg.training.window}
    return out


def student_model(cfg: DictConfig) -> DictConfig:
    """The model of the pseudo-label stages: ``training.student`` (a ``conf/model`` name; null: the model's head)
    with the pseudo-label objective and, when set, ``training.student_optimizer``."""
    name = cfg.training.get("student")
    model = (
        compose_model(name)
        if name and name != cfg.model.name
        else OmegaConf.create(OmegaConf.to_container(cfg.model))
    )
    if model.get("normal_only"):
        raise VadmilError(
            f"training.student={model.name} is an unsupervised head; self-training trains a head by gradient on "
            "pseudo-labels — choose a weakly supervised head (fcn, gcn, gcn_hlnet, rtfm, dted)"
        )
    model.objective = OmegaConf.create(OmegaConf.to_container(cfg.training.objective))
    if cfg.training.get("student_optimizer"):
        model.optimizer = OmegaConf.create(OmegaConf.to_container(cfg.training.student_optimizer))
    return model


def pseudo_stage(cfg: DictConfig, model: DictConfig, pseudo_labels: str, init_from: str | None) -> DictConfig:
    """A pseudo-label stage: ``model`` trained by BCE on ``pseudo_labels`` (an npz), optionally starting from the
    weights of checkpoint ``init_from``."""
    out = OmegaConf.create(OmegaConf.to_container(cfg))
    out.model = model
    out.training = {"mode": "pseudo_labels", "window": cfg.training.window, "pseudo_labels": pseudo_labels,
                    "init_from": init_from}  # fmt: skip
    if cfg.training.get("student_steps"):
        out.trainer.max_steps = int(cfg.training.student_steps)
    return out


def compose_model(name: str) -> DictConfig:
    """``conf/model/<name>.yaml`` composed as `vadmil train model=<name>` would."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from vadmil.commands.base import config_dir

    try:
        if GlobalHydra.instance().is_initialized():
            return compose("train", [f"model={name}"]).model
        with initialize_config_dir(config_dir(), version_base="1.3"):
            return compose("train", [f"model={name}"]).model
    except Exception as err:  # Hydra's MissingConfigException and friends
        raise VadmilError(f"training.student={name}: {str(err).splitlines()[0]}") from None


def initialise(module, cfg: DictConfig) -> None:
    """Load the weights of ``training.init_from`` (a previous stage's checkpoint) into ``module``, when set."""
    path = (cfg.get("training") or {}).get("init_from")
    if not path:
        return
    state = load_checkpoint(path)["state_dict"]
    try:  # the head (and input statistics); objectives may differ between stages
        for name in ("head", "standardiser"):
            part = getattr(module, name)
            if part is not None:
                part.load_state_dict(
                    {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
                )
    except RuntimeError as err:
        raise VadmilError(
            f"cannot start from {path}: the student head differs from the previous stage's "
            f"({str(err).splitlines()[0]}); set training.init_from_previous=false"
        ) from None
