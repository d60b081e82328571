"""Generative models of events behind one interface (:mod:`fastmc.models.base`).

One package per model family, each owning its encoding: :mod:`fastmc.models.vae` (beta-VAE,
alpha-VAE, latent priors) and :mod:`fastmc.models.flow` (structure-first conditional flow).
:mod:`fastmc.models.modeldir` alone reads and writes model directories.  Built-in families
register themselves when imported; :func:`get_model` imports them on demand, so
``get_model("beta-vae")`` works without importing :mod:`fastmc.models.vae` first.
"""

from __future__ import annotations

from fastmc.models.base import (
    Condition,
    GenerativeModel,
    LatentVariableMixin,
    ModelSpec,
    available_models,
    build_model,
    get_model,
    register_model,
)
from fastmc.models.modeldir import ModelDir, ModelDirError, load_model, save_model

__all__ = [
    "Condition",
    "GenerativeModel",
    "LatentVariableMixin",
    "ModelDir",
    "ModelDirError",
    "ModelSpec",
    "available_models",
    "build_model",
    "get_model",
    "load_model",
    "register_model",
    "save_model",
]
