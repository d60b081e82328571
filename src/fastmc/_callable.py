"""Packages that are also the API function of the same name (``fastmc.simulate(...)``).

``fastmc.simulate`` and ``fastmc.evaluate`` are subpackages, and Python binds a subpackage to
its name on the parent package as soon as it is imported, so the API functions of those names
cannot simply be attributes of ``fastmc``.  Instead the subpackage's module object is made
callable: calling it calls the API function, while ``fastmc.evaluate.report`` and ``from
fastmc.evaluate import ...`` keep working.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["make_callable"]


class _CallableModule(types.ModuleType):
    _fastmc_target: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, _, name = self._fastmc_target.partition(":")
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


def make_callable(package: str, target: str) -> None:
    """Make the module ``package`` callable as ``target`` (``"module.path:function"``)."""
    module = sys.modules[package]
    module.__class__ = _CallableModule
    module._fastmc_target = target  # type: ignore[attr-defined]
