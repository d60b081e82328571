"""Generative models of events behind one interface (:mod:`fastmc.models.base`).

Built-in models register themselves when their module is imported; :func:`get_model` imports
the built-in modules on demand, so ``get_model("beta-vae")`` works without importing
:mod:`fastmc.models.vae` first.
"""

from __future__ import annotations

from fastmc.models.base import (
    GenerativeModel,
    ModelSpec,
    available_models,
    build_model,
    get_model,
    load_model,
    register_model,
)

__all__ = [
    "GenerativeModel",
    "ModelSpec",
    "available_models",
    "build_model",
    "get_model",
    "load_model",
    "register_model",
]
