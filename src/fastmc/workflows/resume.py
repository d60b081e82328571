"""``--resume`` that means resume: the stored run's settings win.

:func:`resume_settings` reads the run stored in a model directory and checks the settings the
user asked for against it: one that differs is a :class:`ResumeConflictError` naming the
stored value, except ``epochs`` (the limit may be raised explicitly, never below the epochs
already run) and ``device`` and ``max_minutes`` (they do not change what the run computes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from fastmc.config import config_to_dict, from_dict
from fastmc.errors import ConfigError
from fastmc.models.base import get_model
from fastmc.models.modeldir import CONFIG_FILE, ModelDir
from fastmc.workflows.train_config import TrainConfig

__all__ = ["ResumeConflictError", "resume_settings", "schedule_note"]

#: Settings that do not change what a run computes, so a resumed run may change them.
RESUMABLE = ("device", "max_minutes")


class ResumeConflictError(ConfigError):
    """A setting given with ``--resume`` differs from the one of the stored run."""


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) != list(b)
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return float(a) != float(b)
    return a != b


def resume_settings(
    model_dir: str | os.PathLike[str],
    *,
    model_name: str | None = None,
    model_config: Mapping[str, Any] | None = None,
    config: TrainConfig | Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any], TrainConfig]:
    """The settings of the run stored in ``model_dir``: (model name, model config, TrainConfig).

    ``model_name``, the keys of ``model_config`` and of ``config`` (a dict of the settings the
    user asked for, or a whole TrainConfig) are requests checked against the stored run (see
    the module docstring).  Raises :class:`ResumeConflictError`, or
    :class:`~fastmc.models.modeldir.ModelDirError` if there is no run to resume.
    """
    mdir = ModelDir(model_dir)
    desc = mdir.read_config()
    done = int(mdir.read_checkpoint_status()["epoch"])
    where = mdir.path / CONFIG_FILE

    def conflict(key: str, asked: Any, stored: Any) -> ResumeConflictError:
        flag = "--" + key.replace("_", "-")
        return ResumeConflictError(
            f"{where}: {flag} {asked} conflicts with the stored run ({key} = {stored}); drop "
            f"{flag} to continue the run exactly, or train a new model into another directory"
        )

    if model_name is not None and model_name != desc["model"]:
        raise conflict("model", model_name, desc["model"])
    stored_model = get_model(desc["model"]).model_cls.saved_config(desc["model_config"])
    for key, value in dict(model_config or {}).items():
        if _differs(value, stored_model.get(key)):
            raise conflict(key, value, stored_model.get(key, "not set"))
    stored = dict(desc["train_config"] or {})
    asked = config_to_dict(config) if isinstance(config, TrainConfig) else dict(config or {})
    for key, value in asked.items():
        if key == "epochs":
            if int(value) < done:
                raise ResumeConflictError(
                    f"{where}: --epochs {value} is below the {done} epochs already run; give "
                    f"--epochs {done} or more (the stored limit is {stored.get('epochs')})"
                )
            stored["epochs"] = int(value)
        elif key in RESUMABLE:
            stored[key] = value
        elif _differs(value, stored.get(key)):
            raise conflict(key, value, stored.get(key))
    return desc["model"], stored_model, from_dict(TrainConfig, stored, source=str(where))


def schedule_note(model_dir: str | os.PathLike[str], config: TrainConfig) -> str | None:
    """What a raised epoch limit does to the stored run's cosine rate, or None.

    The cosine rate is a function of the epoch limit (:func:`~fastmc.workflows.schedule.
    learning_rate`), so resuming with ``--epochs`` above the stored limit moves the rate of the
    next batch back up: a warm restart.  ``config`` is the resumed run's (from
    :func:`resume_settings`).  None when nothing changes (constant rate, same limit).
    """
    from fastmc.workflows.schedule import learning_rate

    mdir = ModelDir(model_dir)
    stored = int((mdir.read_config().get("train_config") or {}).get("epochs", config.epochs))
    if config.lr_schedule != "cosine" or config.epochs == stored:
        return None
    done = int(mdir.read_checkpoint_status()["epoch"])
    kw = {"lr": config.lr, "schedule": "cosine", "batches_per_epoch": config.batches_per_epoch,
          "lr_min": config.lr_min, "epoch": done + 1, "step": 1}
    old = learning_rate(epochs=stored, **kw) if done < stored else config.lr_min
    new = learning_rate(epochs=config.epochs, **kw)
    return (f"the cosine learning rate now runs over {config.epochs} epochs instead of {stored}: "
            f"epoch {done + 1} starts at {new:.3g} (the stored schedule: {old:.3g})"
            + ("; a warm restart" if new > old else ""))
