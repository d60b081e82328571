"""Process names, parameter points and the label a conditional model sees.

``fastmc prepare`` names the events of one process simulated at several parameter points
(``fastmc simulate gluino_01 --param m_gluino=1000``, ``... =1400``, ...) after the point:
``gluino_01@m_gluino=1000`` (only the parameters that differ between the points are named; see
:func:`point_name`).  A model trained on such a store has these names as its ``processes``;
:class:`ProcessSpace` reads them back into a *family* (``gluino_01``) and a parameter vector
(``{"m_gluino": 1000.0}``), and builds the conditional label a model takes as input: the
one-hot family [F] followed by the standardised parameters [D] (zero where a family lacks a
parameter).  So a point that was never simulated (``m_gluino=1600``) has a label too, and the
trained range of each parameter is known (:meth:`ProcessSpace.check_range`).

Everything here is a pure function of the process names: nothing extra is saved with a model.
Used by :mod:`fastmc.data.prepare` (naming) and the models and workflows (labels, ranges).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from fastmc.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["ProcessSpace", "format_value", "parse_params", "point_name", "split_name"]

SEP = "@"


def format_value(value: float) -> str:
    """A parameter value as written in a point name (``%g``: 1000.0 -> "1000")."""
    return f"{float(value):g}"


def point_name(process: str, params: Mapping[str, float]) -> str:
    """``process@k1=v1,k2=v2`` (keys sorted), or ``process`` without parameters."""
    if not params:
        return process
    return process + SEP + ",".join(f"{k}={format_value(v)}" for k, v in sorted(params.items()))


def split_name(name: str) -> tuple[str, dict[str, float]]:
    """Inverse of :func:`point_name`: ``("gluino_01", {"m_gluino": 1000.0})``.

    A name without ``@`` has no parameters.  Raises ConfigError for a malformed point.
    """
    if SEP not in name:
        return name, {}
    family, _, rest = name.partition(SEP)
    return family, parse_params(
        rest.split(","), expected=f"process name {name!r}: expected FAMILY@KEY=VALUE,..."
    )


def parse_params(items: Sequence[str], *, expected: str) -> dict[str, float]:
    """``["m_gluino=1600"]`` -> ``{"m_gluino": 1600.0}`` (GeV).

    A malformed item raises ConfigError ``"<expected>, got '<item>'"``.
    """
    params: dict[str, float] = {}
    for item in items:
        key, eq, value = item.partition("=")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq or not key.strip():
            raise ConfigError(f"{expected}, got {item!r}")
    return params


@dataclasses.dataclass(frozen=True)
class ProcessSpace:
    """Families and parameters of a model's process names (see the module docstring).

    Attributes
    ----------
    names : tuple of str          the model's processes (process codes index it)
    families : tuple of str       distinct families, in order of first appearance
    param_names : tuple of str    every parameter named by some point, sorted
    points : tuple of (str, dict) family and parameters of each name
    """

    names: tuple[str, ...]
    families: tuple[str, ...]
    param_names: tuple[str, ...]
    points: tuple[tuple[str, dict[str, float]], ...]

    @classmethod
    def from_names(cls, names: Sequence[str]) -> ProcessSpace:
        points = tuple(split_name(n) for n in names)
        families = tuple(dict.fromkeys(f for f, _ in points))
        params = tuple(sorted({k for _, p in points for k in p}))
        return cls(tuple(names), families, params, points)

    @property
    def label_dim(self) -> int:
        """Width of :meth:`labels`: families + parameters."""
        return len(self.families) + len(self.param_names)

    @property
    def has_params(self) -> bool:
        return bool(self.param_names)

    def _stats(self, key: str) -> tuple[float, float]:
        values = [p[key] for _, p in self.points if key in p]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / len(values)
        return mean, math.sqrt(var) if var > 0 else max(abs(mean), 1.0)

    def label_row(self, family: str, params: Mapping[str, float]) -> list[float]:
        """The label [label_dim] of ``family`` at ``params`` (one-hot family, standardised
        parameters, 0 for a parameter the point does not have)."""
        row = [1.0 if f == family else 0.0 for f in self.families]
        for key in self.param_names:
            if key in params:
                mean, std = self._stats(key)
                row.append((float(params[key]) - mean) / std)
            else:
                row.append(0.0)
        return row

    def labels(self) -> torch.Tensor:
        """float32 [P, label_dim]: the label of each of :attr:`names`."""
        import torch

        return torch.tensor([self.label_row(f, p) for f, p in self.points], dtype=torch.float32)

    def points_of(self, family: str) -> list[int]:
        """Indices into :attr:`points` of ``family``'s points; ConfigError if it is not one of
        :attr:`families`."""
        if family not in self.families:
            raise ConfigError(f"{family!r} is not a process family of the model: "
                              f"{', '.join(self.families)}")
        return [i for i, (f, _) in enumerate(self.points) if f == family]

    def trained(self, family: str) -> dict[str, list[float]]:
        """Parameter -> sorted trained values of ``family``'s points."""
        out: dict[str, set[float]] = {}
        for f, p in self.points:
            if f == family:
                for k, v in p.items():
                    out.setdefault(k, set()).add(v)
        return {k: sorted(v) for k, v in out.items()}

    def resolve(
        self, family: str, params: Mapping[str, float], *, force: bool = False
    ) -> tuple[str, dict[str, float]]:
        """The point name and parameters of ``family`` at ``params``; ConfigError if the
        family is unknown, a parameter is unknown or missing, or (unless ``force``) a value is
        outside the trained range of the family."""
        if family not in self.families:
            raise ConfigError(
                f"process {family!r} is not one of the model's processes: "
                f"{', '.join(self.families)}"
            )
        trained = self.trained(family)
        unknown = sorted(set(params) - set(trained))
        if unknown:
            have = ", ".join(f"{k} ({', '.join(map(format_value, v))})" for k, v in trained.items())
            raise ConfigError(
                f"{family} was not trained over {', '.join(unknown)}; "
                + (f"its parameters: {have}" if trained else "it has no parameters")
            )
        missing = sorted(set(trained) - set(params))
        if missing:
            k = missing[0]
            raise ConfigError(
                f"{family} was trained at several values of {k} "
                f"({', '.join(map(format_value, trained[k]))} GeV): choose one with --param {k}=VALUE"
            )
        for key, value in params.items():
            lo, hi = trained[key][0], trained[key][-1]
            if not lo <= float(value) <= hi and not force:
                raise ConfigError(
                    f"{key}={format_value(value)} is outside the trained range of {family} "
                    f"({format_value(lo)} to {format_value(hi)} GeV, points "
                    f"{', '.join(map(format_value, trained[key]))}): the model never saw events "
                    "there and would extrapolate; pass --force to generate anyway"
                )
        clean = {k: float(v) for k, v in params.items()}
        return point_name(family, clean), clean
