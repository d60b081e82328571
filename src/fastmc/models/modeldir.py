"""The model directory: the only code that reads or writes one (never pickles).

::

    config.json             format ("fastmc-model") and format version, fastmc and torch
                            versions, model name, model config, processes, info (e.g.
                            training-sample weights), training config, data provenance
    weights.safetensors     parameters, buffers and ``extra.*`` tensors (float32, CPU): the
                            best weights (lowest validation loss)
    prior.safetensors       fitted latent priors (latent-variable models): tensors
                            "<kind>/<process>/<name>", their JSON description in the metadata
    history.json            one record per training epoch
    checkpoint.safetensors  latest weights ("model.*") and optimizer state ("optim.*")
    checkpoint.json         epoch, best validation loss, early-stopping counter, history,
                            optimizer parameter groups
    refiner.safetensors     optional (``fastmc refine``): the arrays of a classifier that
                            refines the generator's output by rejection
                            (:mod:`fastmc.workflows.refine`), its JSON description in the
                            metadata, with the digest of the weights it was fitted to

Every file is written atomically (:func:`fastmc.io.atomic.atomic_path`).  A directory written
by another format version is refused with :class:`ModelDirError` saying what to do.
:class:`ModelDir` is the object form; :func:`save_model` / :func:`load_model` /
:func:`read_model_config` the one-call forms.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastmc import __version__
from fastmc.config import config_to_dict
from fastmc.errors import FastMCError
from fastmc.io.atomic import atomic_path
from fastmc.models.base import GenerativeModel, build_model, get_model, is_latent

__all__ = [
    "FORMAT_VERSION",
    "ModelDir",
    "ModelDirError",
    "load_model",
    "read_model_config",
    "save_model",
]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
PRIOR_FILE = "prior.safetensors"
HISTORY_FILE = "history.json"
CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_JSON = "checkpoint.json"
REFINER_FILE = "refiner.safetensors"


class ModelDirError(FastMCError):
    """A model directory is missing files or was written by an incompatible fastmc."""


# ---------------------------------------------------------------------------- file primitives
def _save_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _load_json(path: Path) -> Any:
    if path.parent.exists() and not path.parent.is_dir():
        raise ModelDirError(
            f"{path.parent}: is a file, not a model directory; give the folder `fastmc train` wrote"
        )
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelDirError(f"{path}: missing; is this a fastmc model directory?") from None
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise ModelDirError(f"{path}: not text (damaged?); retrain the model") from None


def _save_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=dict(metadata) if metadata else None)


def _load_tensors(
    path: Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    if not path.exists():
        raise ModelDirError(f"{path}: missing")
    tensors = {}
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError, ...
        if isinstance(exc, FastMCError):
            raise
        raise ModelDirError(
            f"{path}: not a readable safetensors file ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:120]}); the file is damaged: retrain or restore it"
        ) from None
    return tensors, dict(meta)


def check_finite_tensors(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """ModelDirError naming the first tensor with NaN or infinite values."""
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ModelDirError(
                f"{path}: tensor {key} holds {bad} non-finite value(s) (NaN or inf); the model "
                "is broken: retrain it (with a lower --lr) or restore the weights"
            )


_CONFIG_FIELDS = (
    ("model", lambda v: isinstance(v, str), "a model name"),
    ("model_config", lambda v: isinstance(v, dict), "a JSON object"),
    ("processes", lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v),
     "a non-empty list of process names"),
    ("info", lambda v: v is None or isinstance(v, dict), "a JSON object"),
    ("train_config", lambda v: v is None or isinstance(v, dict), "a JSON object"),
)


def model_tensors(model: GenerativeModel) -> dict[str, torch.Tensor]:
    """Everything tensor-valued of ``model``: state dict plus ``extra.*`` tensors."""
    tensors = dict(model.state_dict())
    for key, value in model.extra_tensors().items():
        tensors[f"extra.{key}"] = value
    return tensors


def apply_model_tensors(model: GenerativeModel, tensors: Mapping[str, torch.Tensor]) -> None:
    """Inverse of :func:`model_tensors` (strict: missing or unexpected keys raise)."""
    extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
    state = {k: v for k, v in tensors.items() if not k.startswith("extra.")}
    model.load_extra_tensors(extra)  # first: it may create buffers the state dict fills
    model.load_state_dict(state, strict=True)


def model_description(
    model: GenerativeModel, *, train_config: Any | None = None, data: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The content of ``config.json`` for ``model``."""
    return {
        "format": "fastmc-model",
        "format_version": FORMAT_VERSION,
        "fastmc_version": __version__,
        "torch_version": torch.__version__,
        "model": model.name,
        "model_config": config_to_dict(model.config),
        "processes": list(model.processes),
        "info": model.info,
        "train_config": None if train_config is None else config_to_dict(train_config),
        "data": None if data is None else dict(data),
    }


# ---------------------------------------------------------------------------- the directory
class ModelDir:
    """A model directory at ``path`` (see the module docstring for its files)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ModelDir({str(self.path)!r})"

    def create(self) -> ModelDir:
        """Make the directory (and parents) if needed."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # -- config.json ---------------------------------------------------------------------
    def write_config(
        self,
        model: GenerativeModel,
        *,
        train_config: Any | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Write ``config.json`` for ``model`` (with training settings and data provenance)."""
        description = model_description(model, train_config=train_config, data=data)
        _save_json(self.path / CONFIG_FILE, description)

    def read_config(self) -> dict[str, Any]:
        """``config.json``, checked for format and version (ModelDirError otherwise)."""
        path = self.path / CONFIG_FILE
        desc = _load_json(path)
        if not isinstance(desc, dict) or desc.get("format") != "fastmc-model":
            raise ModelDirError(f"{path}: not a fastmc model description; retrain the model")
        if desc.get("format_version") != FORMAT_VERSION:
            raise ModelDirError(
                f"{self.path}: written with model format {desc.get('format_version')}, this "
                f"fastmc reads format {FORMAT_VERSION}; retrain the model with this version"
            )
        for key, ok, expected in _CONFIG_FIELDS:
            if key not in desc or not ok(desc[key]):
                got = repr(desc.get(key, "missing"))[:40]
                raise ModelDirError(
                    f"{path}: field {key}: expected {expected}, got {got}; the file was edited "
                    "or damaged: retrain the model"
                )
        return desc

    # -- weights and priors --------------------------------------------------------------
    def write_weights(self, model: GenerativeModel) -> None:
        """Write ``weights.safetensors`` (parameters, buffers, extra tensors)."""
        _save_tensors(self.path / WEIGHTS_FILE, model_tensors(model))

    def has_weights(self) -> bool:
        return (self.path / WEIGHTS_FILE).exists()

    def read_weights(self, model: GenerativeModel, device: str | torch.device = "cpu") -> None:
        """Load ``weights.safetensors`` into ``model`` (strict)."""
        path = self.path / WEIGHTS_FILE
        tensors, _ = _load_tensors(path, device)
        check_finite_tensors(tensors, path)
        try:
            apply_model_tensors(model, tensors)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ModelDirError(
                f"{path}: does not fit the model in config.json "
                f"({' '.join(str(exc).split())[:120]}); retrain the model"
            ) from None

    def write_priors(self, model: GenerativeModel) -> None:
        """Write the model's fitted latent priors (the file is removed if there are none)."""
        path = self.path / PRIOR_FILE
        if not is_latent(model) or not model.priors:
            path.unlink(missing_ok=True)
            return
        tensors, described = model.prior_state()
        _save_tensors(path, tensors, {"priors": json.dumps(described)})

    def read_priors(self, model: GenerativeModel) -> None:
        """Read ``prior.safetensors`` (if present) into a latent-variable model's priors."""
        path = self.path / PRIOR_FILE
        if not is_latent(model):
            return
        if not path.exists():
            model.priors = {}
            return
        tensors, meta = _load_tensors(path)
        model.load_prior_state(tensors, json.loads(meta.get("priors", "{}")))

    # -- refiner (optional) --------------------------------------------------------------
    def weights_digest(self) -> str:
        """SHA-256 (hex) of ``weights.safetensors``: which weights a refiner was fitted to."""
        from fastmc.data._layout import sha256_file

        path = self.path / WEIGHTS_FILE
        if not path.exists():
            raise ModelDirError(f"{path}: missing; is this a fastmc model directory?")
        return sha256_file(path)

    def has_refiner(self) -> bool:
        return (self.path / REFINER_FILE).exists()

    def write_refiner(self, arrays: Mapping[str, Any], description: Mapping[str, Any]) -> None:
        """Write ``refiner.safetensors``: numpy ``arrays`` and a JSON ``description``."""
        from safetensors.numpy import save_file

        flat = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        with atomic_path(self.path / REFINER_FILE) as tmp:
            save_file(flat, str(tmp), metadata={"refiner": json.dumps(dict(description))})

    def read_refiner(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """(arrays, description) of ``refiner.safetensors``, None when there is none."""
        from safetensors import safe_open

        path = self.path / REFINER_FILE
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="np") as f:
                meta = f.metadata() or {}
                arrays = {key: f.get_tensor(key) for key in f.keys()}
            description = json.loads(meta["refiner"])
        except Exception as exc:  # safetensors' own errors, KeyError, JSONDecodeError
            raise ModelDirError(
                f"{path}: not a readable refiner ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:120]}); fit it again with `fastmc refine`"
            ) from None
        return arrays, description

    def remove_refiner(self) -> None:
        (self.path / REFINER_FILE).unlink(missing_ok=True)

    # -- history and checkpoints ---------------------------------------------------------
    def write_history(self, history: Sequence[Mapping[str, Any]]) -> None:
        _save_json(self.path / HISTORY_FILE, list(history))

    def read_history(self) -> list[dict[str, Any]]:
        return list(_load_json(self.path / HISTORY_FILE))

    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT_TENSORS).exists() or (self.path / CHECKPOINT_JSON).exists()

    def write_checkpoint(
        self, model: GenerativeModel, optimizer: torch.optim.Optimizer, status: Mapping[str, Any],
        *, average: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """Latest weights and optimizer state, and ``status`` (JSON: epoch, counters, ...);
        ``average``: the state of a weight average (``TrainConfig.ema``), kept alongside."""
        tensors = {f"model.{k}": v for k, v in model_tensors(model).items()}
        tensors.update({f"average.{k}": v for k, v in (average or {}).items()})
        state = optimizer.state_dict()
        for idx, st in state["state"].items():
            for name, value in st.items():
                t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
                tensors[f"optim.{idx}.{name}"] = t
        full = {**status, "param_groups": state["param_groups"]}
        # the status travels inside the tensors file: one atomic write, so a kill at any
        # moment leaves a checkpoint whose weights and epoch belong together
        # (checkpoint.json is a copy for people and tools)
        _save_tensors(self.path / CHECKPOINT_TENSORS, tensors, {"status": json.dumps(full)})
        _save_json(self.path / CHECKPOINT_JSON, full)

    def read_checkpoint_status(self) -> dict[str, Any]:
        """The status of the checkpoint (epoch, counters, history), without loading tensors."""
        path = self.path / CHECKPOINT_TENSORS
        if not path.exists():
            raise ModelDirError(
                f"{path}: missing, there is no interrupted run to resume in {self.path}; "
                "train without --resume"
            )
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as exc:
            raise ModelDirError(
                f"{path}: not a readable safetensors file ({type(exc).__name__}); the "
                "checkpoint is damaged: train again without --resume"
            ) from None
        if "status" in meta:
            return json.loads(meta["status"])
        return _load_json(self.path / CHECKPOINT_JSON)

    def read_checkpoint(
        self,
        model: GenerativeModel,
        optimizer: torch.optim.Optimizer,
        device: str | torch.device = "cpu",
    ) -> dict[str, Any]:
        """Restore ``model`` and ``optimizer`` from the checkpoint; returns the status."""
        status = self.read_checkpoint_status()
        tensors, _ = _load_tensors(self.path / CHECKPOINT_TENSORS, device)
        own = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        apply_model_tensors(model, own)
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": status.pop("param_groups")})
        return status

    def read_checkpoint_average(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The weight-average state stored with the checkpoint (empty if it has none)."""
        tensors, _ = _load_tensors(self.path / CHECKPOINT_TENSORS, device)
        return {k[len("average."):]: v for k, v in tensors.items() if k.startswith("average.")}

    # -- whole models --------------------------------------------------------------------
    def save(
        self,
        model: GenerativeModel,
        *,
        train_config: Any | None = None,
        data: Mapping[str, Any] | None = None,
        history: Sequence[Mapping[str, Any]] | None = None,
    ) -> Path:
        """Write ``model``: weights, priors, history (if given), then config.json."""
        self.create()
        self.write_weights(model)
        self.write_priors(model)
        if history is not None:
            self.write_history(history)
        self.write_config(model, train_config=train_config, data=data)
        return self.path

    def load(self, *, device: str | torch.device = "cpu") -> GenerativeModel:
        """The saved model, in eval mode on ``device`` (priors included)."""
        desc = self.read_config()
        settings = get_model(desc["model"]).model_cls.saved_config(desc["model_config"] or {})
        model = build_model(desc["model"], settings, processes=desc["processes"])
        model.info = dict(desc.get("info") or {})
        self.read_weights(model)
        self.read_priors(model)
        return model.to(device).eval()


def save_model(
    model: GenerativeModel,
    model_dir: str | os.PathLike[str],
    *,
    train_config: Any | None = None,
    data: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``model`` into ``model_dir`` (created): config, weights, priors, history."""
    return ModelDir(model_dir).save(model, train_config=train_config, data=data, history=history)


def load_model(
    model_dir: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> GenerativeModel:
    """The model saved in ``model_dir``, in eval mode on ``device`` (priors included)."""
    return ModelDir(model_dir).load(device=device)


def read_model_config(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``config.json`` of a model directory, checked for format and version."""
    return ModelDir(model_dir).read_config()
