"""Settings as frozen dataclasses: one place that checks them and builds them from dicts.

Every settings class of fastmc (``TrainConfig``, ``BetaVAEConfig``, ``FlowConfig``, ...) is a
frozen, keyword-only dataclass whose fields carry their type annotation and, where a range
matters, a constraint declared with :func:`setting`::

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class TrainConfig:
        epochs: int = setting(50, ge=1)
        lr: float = setting(1e-3, gt=0, lt=10)
        loader_mode: Literal["balanced", "count", "weight"] = "balanced"

        def __post_init__(self) -> None:
            check_config(self)

:func:`check_config` checks every field against its annotation (``int`` excludes ``bool``,
``float`` accepts ints, ``X | None``, ``Literal[...]``, ``tuple[int, ...]`` with lists turned
into tuples) and its constraint, and raises :class:`~fastmc.errors.ConfigError` naming the
class and field.  :func:`from_dict` builds a config from a dict (YAML, JSON, ``--set``) and
names unknown keys; :func:`parse_assignments` turns ``key=value`` strings into a dict typed by
the dataclass.  :func:`derive_seed` is the one rule that turns a user's seed into the seed
of each stochastic part (a training epoch, a generated shard, a store split, a loader stream).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from fastmc.errors import ConfigError

__all__ = [
    "check_config",
    "config_to_dict",
    "derive_seed",
    "from_dict",
    "parse_assignments",
    "setting",
]


def derive_seed(seed: int, *keys: int | str) -> int:
    """The seed (an int in [0, 2**63)) of the part of a computation named by ``keys``.

    ``numpy.random.SeedSequence(seed, spawn_key=keys).generate_state(1, uint64)[0] >> 1``,
    with each string key replaced by the first 8 bytes (little endian) of its SHA-256: the
    same (seed, keys) always give the same seed, different keys give independent streams
    (no arithmetic collisions such as ``seed * a + epoch * b``).  ``derive_seed(s, shard)`` is
    the shard seed of generation; ``derive_seed(s)`` mixes ``s`` alone.
    """
    import hashlib

    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    words = []
    for key in keys:
        if isinstance(key, str):
            words.append(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
        elif isinstance(key, int | np.integer) and not isinstance(key, bool) and key >= 0:
            words.append(int(key))
        else:
            raise ValueError(f"seed keys must be integers >= 0 or strings, got {key!r}")
    state = np.random.SeedSequence(int(seed), spawn_key=tuple(words)).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def setting(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    nonempty: bool = False,
) -> Any:
    """A dataclass field with a range constraint (applied to each element of a tuple)."""
    meta = {"ge": ge, "gt": gt, "lt": lt, "le": le, "nonempty": nonempty}
    return dataclasses.field(default=default, metadata={"fastmc": meta})


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        item = typing.get_args(tp)[0]
        plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
        return f"a list of {plural.get(item, _type_name(item))}"
    if tp is type(None):
        return "null"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _matches(value: Any, tp: Any) -> tuple[bool, Any]:
    """Whether ``value`` has type ``tp``, and the value to store (lists become tuples)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if tp is type(None):
        return value is None, value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _matches(value, arg)
            if ok:
                return True, v
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(tp), value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, value
        args = typing.get_args(tp)
        out = []
        for item in value:
            ok, v = _matches(item, args[0])
            if not ok:
                return False, value
            out.append(v)
        return True, tuple(out)
    if origin is dict or tp is dict:
        return isinstance(value, Mapping), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool), value
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value


def _range_error(value: Any, meta: Mapping[str, Any]) -> str | None:
    checks = (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
              ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<"))
    items = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and meta.get("nonempty") and not value:
        return "needs at least one entry"
    for item in items:
        if not isinstance(item, int | float):
            continue
        if not math.isfinite(item):  # NaN would slip through every comparison below
            return "entries must be finite numbers" if isinstance(value, tuple) else (
                "must be a finite number"
            )
        for key, ok, op in checks:
            bound = meta.get(key)
            if bound is not None and not ok(item, bound):
                many = isinstance(value, tuple)
                if key == "ge" and bound == 1 and isinstance(item, int):
                    return "must be a list of positive integers" if many else "must be a positive integer"
                return f"entries must be {op} {bound}" if many else f"must be {op} {bound}"
    return None


def check_config(config: Any) -> None:
    """Check every field of the dataclass ``config`` (see the module docstring).

    Lists in tuple-typed fields are replaced by tuples.  Raises :class:`ConfigError`
    ``"<Class>.<field> must be <what>, got <value>"``.
    """
    cls = type(config)
    hints = _hints(cls)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        tp = hints.get(f.name, Any)
        ok, stored = _matches(value, tp)
        if not ok:
            raise ConfigError(f"{cls.__name__}.{f.name} must be {_type_name(tp)}, got {value!r}")
        if stored is not value:
            object.__setattr__(config, f.name, stored)
        problem = _range_error(stored, f.metadata.get("fastmc", {}))
        if problem:
            raise ConfigError(f"{cls.__name__}.{f.name} {problem}, got {stored!r}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-serialisable dict (tuples become lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a config dataclass, got {type(config).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type, data: Mapping[str, Any] | None, *, source: str | None = None) -> Any:
    """Build config ``cls`` from ``data`` (None: the defaults).

    Unknown keys raise :class:`ConfigError` naming them and the known settings; a
    ValueError/TypeError of the class itself becomes a ConfigError prefixed with ``source``
    (e.g. a file name) when given.
    """
    data = dict(data or {})
    where = f"{source}: " if source else ""
    names = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"{where}unknown {cls.__name__} setting(s): {', '.join(unknown)}; "
            f"known settings are {', '.join(names)}"
        )
    try:
        return cls(**data)
    except ConfigError as exc:
        if not where:
            raise
        raise ConfigError(f"{where}{exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}{cls.__name__}: {exc}") from None


def _parse_value(text: str, tp: Any) -> Any:
    """``text`` typed by annotation ``tp``: strings stay strings, the rest is YAML."""
    import yaml

    args = typing.get_args(tp)
    stringy = tp is str or (
        typing.get_origin(tp) is typing.Literal and all(isinstance(a, str) for a in args)
    )
    if stringy:
        return text
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if typing.get_origin(tp) is tuple:  # "512,512", "[512, 512]" or a single "512"
        items = value if isinstance(value, list | tuple) else text.split(",")
        return tuple(yaml.safe_load(v) if isinstance(v, str) else v for v in items)
    return value


def parse_assignments(cls: type, assignments: Iterable[str]) -> dict[str, Any]:
    """``["key=value", ...]`` as a dict typed by the fields of ``cls`` (``--set``).

    Tuples are written ``512,512`` or ``[512, 512]``; ``none`` is None.  Unknown keys and
    entries without ``=`` raise :class:`ConfigError`.
    """
    hints = _hints(cls)
    names = sorted(f.name for f in dataclasses.fields(cls))
    out: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if key not in hints or key not in names:
            raise ConfigError(
                f"unknown {cls.__name__} setting {key!r} in --set {item}; "
                f"known settings are {', '.join(names)}"
            )
        out[key] = _parse_value(text.strip(), hints[key])
    return out
