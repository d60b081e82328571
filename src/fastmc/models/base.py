"""The interface every event generator implements, its registry, and the model directory.

``fastmc train``, ``fastmc generate`` and ``fastmc bench`` know nothing about a particular
model: they look its name up in the registry and talk to it through :class:`GenerativeModel`.

Writing a new generator (e.g. ``fastmc.models.flow``)::

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class FlowConfig:                       # every setting, JSON-serialisable, validated
        hidden: int = 256
        def __post_init__(self): ...        # raise ValueError on bad input

    class FlowModel(GenerativeModel):
        name = "flow"
        def __init__(self, config: FlowConfig, *, processes=("unknown",)): ...
        def training_loss(self, raw, *, generator=None): ...   # -> (loss, {"nll": ...})
        def sample(self, n, *, prior="normal", process=None, generator=None, truth=None): ...

    register_model("flow", FlowConfig, FlowModel)

and add the module name to ``_BUILTIN_MODULES`` below (so that :func:`get_model` finds it
without an explicit import).  Optional hooks: :meth:`GenerativeModel.fit_data` (data-dependent
state fitted once before training, e.g. an encoding's standardisation),
:meth:`GenerativeModel.extra_tensors`/:meth:`GenerativeModel.load_extra_tensors` (tensors that
are not parameters or buffers, saved with the weights), :meth:`GenerativeModel.fit_prior` and
:attr:`GenerativeModel.prior_kinds` (latent priors), :meth:`GenerativeModel.core_runner`
(the bare network, timed by ``fastmc bench``).

Model directory (written by :func:`save_model`, read by :func:`load_model`; never pickles)::

    config.json          format version, fastmc version, model name, model config, processes,
                         info (e.g. training-sample weights), training config, data provenance
    weights.safetensors  parameters, buffers and extra tensors (float32, CPU)
    prior.safetensors    fitted latent priors: tensors "<kind>/<process>/<name>", their JSON
                         description in the file's metadata (see fastmc.models.priors)
    history.json         losses per epoch (written by fastmc.train)
    checkpoint.*         latest training state for --resume (written by fastmc.train)
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from fastmc import __version__
from fastmc.data.batch import RawBatch
from fastmc.errors import FastMCError
from fastmc.io.atomic import atomic_path

__all__ = [
    "FORMAT_VERSION",
    "GenerativeModel",
    "ModelDirError",
    "ModelSpec",
    "available_models",
    "build_model",
    "config_from_dict",
    "config_to_dict",
    "get_model",
    "load_json",
    "load_model",
    "load_tensors",
    "register_model",
    "save_json",
    "save_model",
    "save_tensors",
]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
PRIOR_FILE = "prior.safetensors"
HISTORY_FILE = "history.json"

#: Modules that register built-in models when imported (imported lazily by get_model).
_BUILTIN_MODULES = ("fastmc.models.vae", "fastmc.models.flow")


class ModelDirError(FastMCError):
    """A model directory is missing files or was written by an incompatible fastmc."""


# ---------------------------------------------------------------------------- configs
def config_to_dict(config: Any) -> dict[str, Any]:
    """A frozen config dataclass as a JSON-serialisable dict (tuples become lists)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a config dataclass, got {type(config).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Build config ``cls`` from a dict; unknown keys raise ValueError naming them.

    Lists become tuples where the field default is a tuple.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} setting(s): {', '.join(unknown)}; "
            f"known settings are {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for key, value in data.items():
        f = fields[key]
        if isinstance(value, list) and isinstance(f.default, tuple):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


# ---------------------------------------------------------------------------- the interface
class GenerativeModel(torch.nn.Module):
    """Base class of event generators: trains on :class:`RawBatch`, samples RawBatch.

    Subclasses set :attr:`name`, take their frozen config dataclass as the first argument of
    ``__init__(config, *, processes=...)`` (stored as :attr:`config`) and implement
    :meth:`training_loss` and :meth:`sample`.  Everything a model needs to generate must be in
    its parameters, buffers, :meth:`extra_tensors`, :attr:`info` (JSON) or :attr:`priors`, so
    that :func:`save_model`/:func:`load_model` round-trip it exactly.

    Attributes
    ----------
    name : str (class attribute)
        Registry name, e.g. ``"beta-vae"``.
    prior_kinds : tuple of str (class attribute)
        Latent priors :meth:`sample` accepts (``"normal"`` is always accepted).
    config : frozen dataclass
        Every setting of the model.
    processes : tuple of str
        Process names; ``RawBatch.process`` indexes into it.
    info : dict
        JSON-serialisable facts learned from the data (e.g. per-process event weights);
        saved in ``config.json``.
    priors : dict[(kind, process), LatentPrior]
        Fitted latent priors (see :mod:`fastmc.models.priors`); saved in ``prior.safetensors``.
    """

    name: ClassVar[str] = ""
    prior_kinds: ClassVar[tuple[str, ...]] = ("normal",)

    def __init__(self, config: Any, *, processes: Sequence[str] = ("unknown",)) -> None:
        super().__init__()
        self.config = config
        self.processes: tuple[str, ...] = tuple(str(p) for p in processes)
        if not self.processes:
            raise ValueError("a model needs at least one process name")
        self.info: dict[str, Any] = {}
        self.priors: dict[tuple[str, str], Any] = {}

    # -- to implement ------------------------------------------------------------------
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
        prior: str = "normal",
        process: str | None = None,
        generator: torch.Generator | None = None,
        truth: RawBatch | None = None,
    ) -> RawBatch:
        """``n`` new events as a RawBatch on the model's device (GeV, radians).

        ``prior`` picks the latent prior (one of :attr:`prior_kinds`; fitted priors are looked
        up for ``process``, default the first process).  ``truth`` holds the input events of
        the ``"truth"`` prior (``n`` must equal ``len(truth)``).  Same ``generator`` state,
        same events.  ``weight`` of the result is 1; ``process`` indexes :attr:`processes`.
        Implementations run in eval mode without gradients.
        """
        raise NotImplementedError

    # -- optional hooks ----------------------------------------------------------------
    def fit_data(self, raw: RawBatch) -> None:
        """Fit data-dependent state once before training (default: nothing).

        ``raw`` is a sample of training events (up to ``TrainConfig.fit_events``).
        """

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Non-parameter tensors to save with the weights (default: none)."""
        return {}

    def load_extra_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore what :meth:`extra_tensors` returned (default: nothing)."""

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

        Stores it in :attr:`priors` and returns a JSON report (``converged``, ``n_iter``,
        ...).  Models without a latent space raise ValueError (the default).
        """
        raise ValueError(f"model {self.name!r} has no latent prior to fit")

    def core_runner(
        self, batch_size: int, *, device: torch.device | str = "cpu"
    ) -> Callable[[], int] | None:
        """For ``fastmc bench``: a function that runs the bare network once on a prepared
        input of ``batch_size`` events (no prior sampling, no conversion to events) and
        returns ``batch_size``; None (the default) if the model has no such core.
        """
        return None

    # -- helpers -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """The device of the first parameter (CPU for a model without parameters)."""
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def process_index(self, process: str | None) -> int:
        """Index of ``process`` in :attr:`processes` (None: the first); ValueError if absent."""
        if process is None:
            return 0
        if process not in self.processes:
            raise ValueError(
                f"process {process!r} is not one of the model's processes: "
                f"{', '.join(self.processes)}"
            )
        return self.processes.index(process)


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
    """The :class:`ModelSpec` registered as ``name``; ValueError listing the choices."""
    if name not in _REGISTRY:
        _import_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
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
        config = config_from_dict(spec.config_cls, config)
    return spec.model_cls(config, processes=processes)


# ---------------------------------------------------------------------------- files
def save_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; ModelDirError if it is missing or malformed."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelDirError(f"{path}: missing; is this a fastmc model directory?") from None
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def save_tensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write tensors (moved to CPU, made contiguous) to a safetensors file, atomically."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=dict(metadata) if metadata else None)


def load_tensors(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of a safetensors file (no pickle involved)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise ModelDirError(f"{path}: missing")
    tensors = {}
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        meta = f.metadata() or {}
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    return tensors, dict(meta)


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
    model: GenerativeModel,
    *,
    train_config: Any | None = None,
    data: Mapping[str, Any] | None = None,
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


def save_priors(model: GenerativeModel, model_dir: str | os.PathLike[str]) -> None:
    """Write ``model.priors`` to ``prior.safetensors`` (removed if there are none)."""
    path = Path(model_dir) / PRIOR_FILE
    if not model.priors:
        path.unlink(missing_ok=True)
        return
    tensors: dict[str, torch.Tensor] = {}
    described: dict[str, Any] = {}
    for (kind, process), prior in model.priors.items():
        key = f"{kind}/{process}"
        described[key] = prior.describe()
        for name, value in prior.state_tensors().items():
            tensors[f"{key}/{name}"] = value
    save_tensors(path, tensors, {"priors": json.dumps(described)})


def load_priors(model: GenerativeModel, model_dir: str | os.PathLike[str]) -> None:
    """Read ``prior.safetensors`` (if present) into ``model.priors``."""
    from fastmc.models.priors import prior_from_state

    path = Path(model_dir) / PRIOR_FILE
    model.priors = {}
    if not path.exists():
        return
    tensors, meta = load_tensors(path)
    described = json.loads(meta.get("priors", "{}"))
    for key, desc in described.items():
        kind, process = key.split("/", 1)
        own = {k[len(key) + 1 :]: v for k, v in tensors.items() if k.startswith(key + "/")}
        model.priors[(kind, process)] = prior_from_state(desc, own)


def save_model(
    model: GenerativeModel,
    model_dir: str | os.PathLike[str],
    *,
    train_config: Any | None = None,
    data: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``model`` into ``model_dir`` (created): config, weights, priors, history."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(model_dir / WEIGHTS_FILE, model_tensors(model))
    save_priors(model, model_dir)
    if history is not None:
        save_json(model_dir / HISTORY_FILE, list(history))
    save_json(model_dir / CONFIG_FILE, model_description(model, train_config=train_config, data=data))
    return model_dir


def read_model_config(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``config.json`` of a model directory, checked for format and version."""
    desc = load_json(Path(model_dir) / CONFIG_FILE)
    if desc.get("format") != "fastmc-model":
        raise ModelDirError(f"{model_dir}: config.json is not a fastmc model description")
    if desc.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(
            f"{model_dir}: written with model format {desc.get('format_version')}, this fastmc "
            f"reads format {FORMAT_VERSION}; retrain the model with this version"
        )
    return desc


def load_model(
    model_dir: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> GenerativeModel:
    """The model saved in ``model_dir``, in eval mode on ``device`` (priors included)."""
    model_dir = Path(model_dir)
    desc = read_model_config(model_dir)
    model = build_model(desc["model"], desc["model_config"], processes=desc["processes"])
    model.info = dict(desc.get("info") or {})
    tensors, _ = load_tensors(model_dir / WEIGHTS_FILE)
    apply_model_tensors(model, tensors)
    load_priors(model, model_dir)
    return model.to(device).eval()
