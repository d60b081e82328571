"""The interface every event generator honours, and the registry of generators.

The workflows (``fastmc.workflows``: train, generate, bench, study) know nothing about a
particular model: they look its name up in the registry and talk to it through
:class:`GenerativeModel`.  Reading and writing a model directory is
:mod:`fastmc.models.modeldir`'s job alone.

Writing a new generator family (a package ``fastmc.models.<family>/`` that owns its
encoding)::

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class MyConfig:                          # every setting, JSON-serialisable
        hidden: int = setting(256, ge=1)     # fastmc.config.setting: type + range
        def __post_init__(self): check_config(self)

    class MyModel(GenerativeModel):
        name = "my-model"
        def __init__(self, config: MyConfig, *, processes=("unknown",)): ...
        def fit_data(self, raw): ...                                   # optional
        def training_loss(self, raw, *, generator=None): ...           # -> (loss, {"nll": ...})
        def sample(self, n, *, condition=None, generator=None): ...    # -> RawBatch

    register_model("my-model", MyConfig, MyModel)

and add the package to ``_BUILTIN_MODULES`` below (so that :func:`get_model` finds it without
an explicit import).  The contract test (``tests/models/test_models_contract.py``) runs over
every registered model.  Models with a latent space add :class:`LatentVariableMixin`
(latent priors, ``fit_prior``, the ``"truth"`` prior).  Optional hooks:
:meth:`GenerativeModel.extra_tensors` / :meth:`GenerativeModel.load_extra_tensors` (tensors
that are not parameters or buffers, saved with the weights) and
:meth:`GenerativeModel.core_runner` (the bare network, timed by ``fastmc bench``),
:meth:`GenerativeModel.generation_stats` (events a model rejected inside ``sample``).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from fastmc.config import from_dict
from fastmc.data.batch import RawBatch
from fastmc.errors import ConfigError

__all__ = [
    "Condition",
    "GenerativeModel",
    "LatentVariableMixin",
    "ModelSpec",
    "available_models",
    "build_model",
    "get_model",
    "is_latent",
    "register_model",
]

#: Modules that register built-in models when imported (imported lazily by get_model).
_BUILTIN_MODULES = ("fastmc.models.vae", "fastmc.models.flow")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Condition:
    """What generated events are conditioned on.

    Attributes
    ----------
    process : str or None   process name (one of the model's ``processes``; None: the first),
                            or, with ``params``, a family of parameter points (``gluino_01``)
    params : dict or None   physical parameters of the point (GeV), e.g. ``{"m_gluino": 1600}``,
                            for a model with :attr:`GenerativeModel.param_conditional`
                            (see :mod:`fastmc.points`)
    lead_range : (lo, hi)   GeV bounds of the model's leading observable
                            (:attr:`GenerativeModel.lead_observable`): it is drawn from its
                            learned distribution truncated to them (None: not truncated)
    """

    process: str | None = None
    params: Mapping[str, float] | None = None
    lead_range: tuple[float, float] | None = None


# ---------------------------------------------------------------------------- the interface
class GenerativeModel(torch.nn.Module):
    """Base class of event generators: trains on :class:`RawBatch`, samples RawBatch.

    Subclasses set :attr:`name`, take their frozen config dataclass as the first argument of
    ``__init__(config, *, processes=...)`` (stored as :attr:`config`) and implement
    :meth:`training_loss` and :meth:`sample`.  Everything a model needs to generate must be in
    its parameters, buffers, :meth:`extra_tensors` or :attr:`info` (JSON), so that
    :func:`fastmc.models.modeldir.save_model` / ``load_model`` round-trip it exactly.

    Attributes
    ----------
    name : str (class attribute)
        Registry name, e.g. ``"beta-vae"``.
    config : frozen dataclass
        Every setting of the model.
    processes : tuple of str
        Process names; ``RawBatch.process`` indexes into it.
    info : dict
        JSON-serialisable facts learned from the data (e.g. per-process event weights);
        saved in ``config.json``.
    """

    name: ClassVar[str] = ""

    def __init__(self, config: Any, *, processes: Sequence[str] = ("unknown",)) -> None:
        super().__init__()
        self.config = config
        self.processes: tuple[str, ...] = tuple(str(p) for p in processes)
        if not self.processes:
            raise ConfigError("a model needs at least one process name")
        self.info: dict[str, Any] = {}

    # -- to implement ------------------------------------------------------------------
    def fit_data(self, raw: RawBatch) -> None:
        """Fit data-dependent state once before training (default: nothing).

        ``raw`` is a sample of training events (up to ``TrainConfig.fit_events``).
        """

    def training_loss(
        self, raw: RawBatch, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch (scalar tensor with grad) and its named parts as floats.

        ``raw`` is on the model's device; ``generator`` (same device) drives any noise.
        """
        raise NotImplementedError

    def sample(
        self,
        n: int,
        *,
        condition: Condition | None = None,
        generator: torch.Generator | None = None,
    ) -> RawBatch:
        """``n`` new events as a RawBatch on the model's device (GeV, radians).

        ``condition`` says what to generate (its process; None: the model's first process).
        Same ``generator`` state, same events.  ``weight`` of the result is 1; ``process``
        indexes :attr:`processes`.  Implementations run in eval mode without gradients.
        """
        raise NotImplementedError

    # -- optional hooks ----------------------------------------------------------------
    @classmethod
    def saved_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The settings of a saved model (``config.json``'s ``model_config``) as this version
        reads them: a setting added later with a new default is given the value that rebuilds
        the saved model (default: unchanged)."""
        return dict(config)

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Non-parameter tensors to save with the weights (default: none)."""
        return {}

    def load_extra_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore what :meth:`extra_tensors` returned (default: nothing)."""

    def core_runner(
        self, batch_size: int, *, device: torch.device | str = "cpu"
    ) -> Callable[[], int] | None:
        """For ``fastmc bench``: a function that runs the bare network once on a prepared
        input of ``batch_size`` events (no prior sampling, no conversion to events) and
        returns ``batch_size``; None (the default) if the model has no such core.
        """
        return None

    @property
    def process_conditional(self) -> bool:
        """Whether ``sample(condition=Condition(process=p))`` returns events of ``p`` alone.

        True for a one-process model; a multi-process model that learns one undifferentiated
        mixture returns False (the default), and the generate workflow then refuses
        ``process=...`` instead of stamping the label on mixture events.
        """
        return len(self.processes) == 1

    @property
    def lead_observable(self) -> str | None:
        """The observable (a name of :mod:`fastmc.evaluate.observables`, e.g. ``"met"``) the
        model is conditioned on and can draw truncated to ``Condition.lead_range``; None (the
        default) for a model without one."""
        return None

    @property
    def param_conditional(self) -> bool:
        """Whether ``sample`` accepts ``Condition(process=family, params={...})`` for points
        between the trained parameter points (default False)."""
        return False

    def generation_stats(self) -> dict[str, int]:
        """Cumulative counts of events the model drew and rejected inside :meth:`sample`
        since it was built or loaded, e.g. ``{"drawn": 1200, "rejected": 200}``; empty (the
        default) for a model that never rejects.  ``fastmc generate`` records the difference
        over a run in the output's metadata and its report."""
        return {}

    # -- helpers -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """The device of the first parameter (CPU for a model without parameters)."""
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def process_index(self, process: str | Condition | None) -> int:
        """Index of ``process`` in :attr:`processes` (None: the first); ConfigError if absent."""
        if isinstance(process, Condition):
            process = process.process
        if process is None:
            return 0
        if process not in self.processes:
            raise ConfigError(
                f"process {process!r} is not one of the model's processes: "
                f"{', '.join(self.processes)}"
            )
        return self.processes.index(process)


class LatentVariableMixin:
    """What a model with a latent space adds to :class:`GenerativeModel` (the VAEs).

    ``sample`` takes two more keywords: ``prior`` (one of :attr:`prior_kinds`; fitted priors
    are looked up for the condition's process) and ``truth`` (a RawBatch of ``n`` input
    events for the ``"truth"`` prior: encoded, then noised).  Fitted priors live in
    :attr:`priors` and are saved by :mod:`fastmc.models.modeldir` through
    :meth:`prior_state` / :meth:`load_prior_state`.

    Attributes
    ----------
    prior_kinds : tuple of str (class attribute)
        Latent priors :meth:`sample` accepts (``"normal"`` is always accepted).
    priors : dict[(kind, process), prior]
        Fitted latent priors (objects with ``describe()`` and ``state_tensors()``).
    """

    prior_kinds: ClassVar[tuple[str, ...]] = ("normal",)
    priors: dict[tuple[str, str], Any]

    def fit_prior(
        self,
        kind: str,
        batches: Iterable[RawBatch],
        *,
        process: str | None = None,
        components: int = 100,
        max_events: int = 200_000,
        seed: int = 0,
        progress: Callable[[int], None] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Fit latent prior ``kind`` for ``process`` on events from ``batches``.

        Stores it in :attr:`priors` and returns a JSON report (``converged``, ``n_iter``, ...).
        """
        raise NotImplementedError

    @staticmethod
    def prior_from_state(description: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Any:
        """Rebuild one prior from ``describe()`` and ``state_tensors()`` output."""
        raise NotImplementedError

    def prior_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors ``"<kind>/<process>/<name>"`` and descriptions ``"<kind>/<process>"``."""
        tensors: dict[str, torch.Tensor] = {}
        described: dict[str, Any] = {}
        for (kind, process), prior in self.priors.items():
            key = f"{kind}/{process}"
            described[key] = prior.describe()
            for name, value in prior.state_tensors().items():
                tensors[f"{key}/{name}"] = value
        return tensors, described

    def load_prior_state(
        self, tensors: Mapping[str, torch.Tensor], described: Mapping[str, Any]
    ) -> None:
        """Inverse of :meth:`prior_state` (replaces :attr:`priors`)."""
        self.priors = {}
        for key, desc in described.items():
            kind, process = key.split("/", 1)
            own = {k[len(key) + 1 :]: v for k, v in tensors.items() if k.startswith(key + "/")}
            self.priors[(kind, process)] = self.prior_from_state(desc, own)


def is_latent(model: Any) -> bool:
    """Whether ``model`` (instance or class) has latent priors (:class:`LatentVariableMixin`)."""
    cls = model if isinstance(model, type) else type(model)
    return issubclass(cls, LatentVariableMixin)


# ---------------------------------------------------------------------------- registry
@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: its name, config dataclass and model class."""

    name: str
    config_cls: type
    model_cls: type[GenerativeModel]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, config_cls: type, model_cls: type[GenerativeModel]) -> None:
    """Make ``name`` available to train/generate/bench (re-registering replaces)."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError("config_cls must be a (frozen) dataclass")
    _REGISTRY[name] = ModelSpec(name, config_cls, model_cls)


def _import_builtins() -> None:
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def available_models() -> list[str]:
    """Names of the registered models (built-in modules imported first)."""
    _import_builtins()
    return sorted(_REGISTRY)


def get_model(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name``; ConfigError listing the choices."""
    if name not in _REGISTRY:
        _import_builtins()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_model(
    name: str,
    config: Any | Mapping[str, Any] | None = None,
    *,
    processes: Sequence[str] = ("unknown",),
) -> GenerativeModel:
    """A fresh model ``name`` from its config (dataclass, dict of settings or None = defaults)."""
    spec = get_model(name)
    if config is None:
        config = spec.config_cls()
    elif isinstance(config, Mapping):
        config = from_dict(spec.config_cls, config)
    return spec.model_cls(config, processes=processes)


