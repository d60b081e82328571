"""fastmc: fast deep generative surrogates for LHC Monte Carlo events.

The Python API, one function per pipeline step (paths or Events wherever events go in; GeV)::

    import fastmc
    events = fastmc.simulate("ttbar", 1000, seed=1)          # Pythia 8 + detector
    store = fastmc.prepare(events, "store", val=0.1, test=0.3)
    fastmc.train(store, "model", model="beta-vae", epochs=5)
    generated = fastmc.generate("model", 10_000, seed=0)
    report = fastmc.evaluate(store, generated)                # vs the held-out test split

Also ``refine`` (a model's classifier refinement), ``read_events``, ``write_events``,
``load_model`` and the event type ``Events``
(``Events.to_awkward()``, ``Events.to_pandas()``).  Everything is imported on first use, so
``import fastmc`` stays light (no torch) and prints nothing.  Guide: ``docs/api.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "Events",
    "__version__",
    "evaluate",
    "generate",
    "load_model",
    "prepare",
    "read_events",
    "refine",
    "simulate",
    "train",
    "write_events",
]

# name -> where it lives; the package root is the API facade over the layers below.
# "simulate" and "evaluate" are subpackages made callable (fastmc._callable): Python binds a
# subpackage to its name here as soon as it is imported, so the name must BE the package.
_WHERE = {
    "Events": "fastmc.events:Events",
    "read_events": "fastmc.data.sources:read_events",
    "simulate": "fastmc.simulate",
    "evaluate": "fastmc.evaluate",
    **{name: f"fastmc.workflows.api:{name}" for name in (
        "generate", "load_model", "prepare", "refine", "train", "write_events",
    )},
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'fastmc' has no attribute {name!r}")
    module, _, attr = _WHERE[name].partition(":")
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
        globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
