"""``Events``: the single in-memory event type of fastmc.

An event holds the missing transverse energy (MET, METphi) and up to ``K`` reconstructed objects,
each with a type and a four-vector.  Objects are stored in padded arrays of fixed width ``K``
(default :data:`DEFAULT_MAX_OBJECTS` = 19).  Units: **GeV** for energies and momenta, radians for
angles, phi in (-pi, pi].  MeV appears only at the Dark Machines CSV boundary.

Object order ("Dark Machines order"): jets (``j`` and ``b`` together) by descending pT, then
electrons (``e-``/``e+``), muons (``m-``/``m+``), photons (``g``), each group by descending pT.
Padding objects (type 0) come last and have all-zero four-vectors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from fastmc.kinematics import sort_dark_machines, wrap_angle

__all__ = [
    "DEFAULT_MAX_OBJECTS",
    "GROUP_OF_TYPE",
    "PAD",
    "TYPE_CODES",
    "TYPE_LEGEND",
    "TYPE_NAMES",
    "UNITS",
    "Events",
]

DEFAULT_MAX_OBJECTS = 19
PAD = 0
#: Type code -> Dark Machines name (code 0 is padding).
TYPE_NAMES: tuple[str, ...] = ("", "j", "b", "e-", "e+", "m-", "m+", "g")
#: Dark Machines name -> type code.
TYPE_CODES: dict[str, int] = {name: code for code, name in enumerate(TYPE_NAMES) if name}
#: Type code -> name as written in file metadata (JSON keys are strings): {"1": "j", ...}.
TYPE_LEGEND: dict[str, str] = {str(code): name for code, name in enumerate(TYPE_NAMES) if name}
#: Unit of every stored quantity ("" = unitless); the weight follows the Dark Machines
#: convention sigma x 10 fb^-1 / N (its sum is the expected number of events in 10 fb^-1).
UNITS: dict[str, str] = {
    "E": "GeV", "pt": "GeV", "eta": "", "phi": "rad", "met": "GeV", "met_phi": "rad",
    "weight": "events at 10 fb^-1", "obj_type": "", "event_id": "", "process": "",
}
#: Type code -> object group (0 padding, 1 jets, 2 electrons, 3 muons, 4 photons), the
#: order of the groups in an event.
GROUP_OF_TYPE = np.array([0, 1, 1, 2, 2, 3, 3, 4], dtype=np.int8)

E, PT, ETA, PHI = 0, 1, 2, 3


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Wrap angles (radians, any shape) into (-pi, pi] (:func:`fastmc.kinematics.wrap_angle`)."""
    return wrap_angle(np.asarray(phi))


@dataclasses.dataclass(eq=False)
class Events:
    """A batch of ``N`` events with up to ``K`` objects each.

    Attributes
    ----------
    types : int8 [N, K]
        Object type codes, 0 = padding, 1..7 = j, b, e-, e+, m-, m+, g (:data:`TYPE_NAMES`).
    p4 : float32 [N, K, 4]
        (E, pT, eta, phi) of each object; E and pT in GeV, phi in (-pi, pi]. Zero for padding.
    met, met_phi : float32 [N]
        Missing transverse energy (GeV) and its azimuth (radians).
    event_id : int64 [N]
        Event identifiers (not necessarily unique: Dark Machines signal files repeat them).
    process_code : int32 [N]
        Index into ``process_names``; use :attr:`process` for the names.
    process_names : tuple of str
        The process IDs present (e.g. ``"ttbar"``).
    weight : float64 [N]
        Event weights (Dark Machines: cross section x 10 fb^-1 / events in the file).
    meta : dict
        Free-form provenance (JSON-serialisable), e.g. the generator's cross section.
    """

    types: np.ndarray
    p4: np.ndarray
    met: np.ndarray
    met_phi: np.ndarray
    event_id: np.ndarray
    process_code: np.ndarray
    process_names: tuple[str, ...]
    weight: np.ndarray
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.types = np.ascontiguousarray(self.types, dtype=np.int8)
        self.p4 = np.ascontiguousarray(self.p4, dtype=np.float32)
        self.met = np.ascontiguousarray(self.met, dtype=np.float32)
        self.met_phi = np.ascontiguousarray(self.met_phi, dtype=np.float32)
        self.event_id = np.ascontiguousarray(self.event_id, dtype=np.int64)
        self.process_code = np.ascontiguousarray(self.process_code, dtype=np.int32)
        self.weight = np.ascontiguousarray(self.weight, dtype=np.float64)
        self.process_names = tuple(str(p) for p in self.process_names)
        n = self.types.shape[0]
        if self.types.ndim != 2:
            raise ValueError(f"types must have shape [N, K], got {self.types.shape}")
        k = self.types.shape[1]
        if self.p4.shape != (n, k, 4):
            raise ValueError(f"p4 must have shape [N, K, 4] = {(n, k, 4)}, got {self.p4.shape}")
        for name in ("met", "met_phi", "event_id", "process_code", "weight"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ValueError(f"{name} must have shape [N] = ({n},), got {arr.shape}")
        if n and (self.process_code.min() < 0 or self.process_code.max() >= len(self.process_names)):
            raise ValueError("process_code out of range of process_names")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def empty(cls, max_objects: int = DEFAULT_MAX_OBJECTS) -> Events:
        """An Events with no events and width ``max_objects``."""
        return cls.from_arrays(
            types=np.zeros((0, max_objects), np.int8),
            p4=np.zeros((0, max_objects, 4), np.float32),
            met=np.zeros(0, np.float32),
            met_phi=np.zeros(0, np.float32),
        )

    @classmethod
    def from_arrays(
        cls,
        *,
        types: np.ndarray,
        p4: np.ndarray,
        met: np.ndarray,
        met_phi: np.ndarray,
        event_id: np.ndarray | None = None,
        process: str | Sequence[str] | np.ndarray = "unknown",
        weight: np.ndarray | float = 1.0,
        meta: dict[str, Any] | None = None,
    ) -> Events:
        """Build Events from arrays; ``process`` may be one name or one name per event.

        ``event_id`` defaults to 0..N-1 and ``weight`` to 1.  Shapes as in the class docstring.
        """
        n = np.asarray(types).shape[0]
        if isinstance(process, str):
            names: tuple[str, ...] = (process,)
            codes = np.zeros(n, np.int32)
        else:
            uniq, inv = np.unique(np.asarray(process, dtype=str), return_inverse=True)
            names, codes = tuple(uniq.tolist()), inv.astype(np.int32)
        return cls(
            types=types,
            p4=p4,
            met=met,
            met_phi=met_phi,
            event_id=np.arange(n) if event_id is None else event_id,
            process_code=codes,
            process_names=names,
            weight=np.broadcast_to(np.asarray(weight, np.float64), (n,)),
            meta=dict(meta or {}),
        )

    # ------------------------------------------------------------------ basic protocol
    def __len__(self) -> int:
        return self.types.shape[0]

    @property
    def max_objects(self) -> int:
        """K, the padded width."""
        return self.types.shape[1]

    @property
    def process(self) -> np.ndarray:
        """Process ID of each event, str [N]."""
        return np.asarray(self.process_names, dtype=object)[self.process_code]

    @property
    def n_objects(self) -> np.ndarray:
        """Number of real (non-padding) objects per event, int64 [N]."""
        return (self.types != PAD).sum(axis=1)

    def __getitem__(self, index: Any) -> Events:
        """Select events by slice, integer array or boolean mask (always returns Events)."""
        if isinstance(index, int | np.integer):
            index = slice(int(index), int(index) + 1 if index != -1 else None)
        return dataclasses.replace(
            self,
            types=self.types[index],
            p4=self.p4[index],
            met=self.met[index],
            met_phi=self.met_phi[index],
            event_id=self.event_id[index],
            process_code=self.process_code[index],
            weight=self.weight[index],
            meta=dict(self.meta),
        )

    def __repr__(self) -> str:
        procs = ", ".join(self.process_names[:4]) + (", ..." if len(self.process_names) > 4 else "")
        return f"Events(n={len(self)}, max_objects={self.max_objects}, processes=[{procs}])"

    def equals(self, other: Events, *, rtol: float = 0.0, atol: float = 0.0) -> bool:
        """True if both hold the same events (floats compared with ``rtol``/``atol``)."""
        if len(self) != len(other) or self.max_objects != other.max_objects:
            return False
        if not (
            np.array_equal(self.types, other.types)
            and np.array_equal(self.event_id, other.event_id)
            and np.array_equal(self.process, other.process)
        ):
            return False
        pairs = [(self.p4, other.p4), (self.met, other.met), (self.met_phi, other.met_phi)]
        pairs.append((self.weight, other.weight))
        return all(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True) for a, b in pairs)

    # ------------------------------------------------------------------ reshaping
    @staticmethod
    def concatenate(parts: Iterable[Events]) -> Events:
        """Join several Events (same width K) into one, merging process names."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to concatenate")
        widths = {p.max_objects for p in parts}
        if len(widths) != 1:
            raise ValueError(f"cannot concatenate Events of different widths {sorted(widths)}")
        names: list[str] = []
        for p in parts:
            names += [n for n in p.process_names if n not in names]
        lookup = {n: i for i, n in enumerate(names)}
        codes = [
            np.array([lookup[n] for n in p.process_names], np.int32)[p.process_code]
            if len(p)
            else np.zeros(0, np.int32)
            for p in parts
        ]
        meta: dict[str, Any] = {}
        for p in parts:
            meta.update(p.meta)
        return Events(
            types=np.concatenate([p.types for p in parts]),
            p4=np.concatenate([p.p4 for p in parts]),
            met=np.concatenate([p.met for p in parts]),
            met_phi=np.concatenate([p.met_phi for p in parts]),
            event_id=np.concatenate([p.event_id for p in parts]),
            process_code=np.concatenate(codes),
            process_names=tuple(names),
            weight=np.concatenate([p.weight for p in parts]),
            meta=meta,
        )

    def with_max_objects(self, k: int, *, truncate: bool = False) -> Events:
        """Return a copy padded or cut to width ``k``.

        Cutting drops the last objects (photons first, then muons, ...); it raises
        ``ValueError`` if any event has more than ``k`` objects unless ``truncate=True``.
        """
        cur = self.max_objects
        if k >= cur:
            pad = k - cur
            types = np.pad(self.types, ((0, 0), (0, pad)))
            p4 = np.pad(self.p4, ((0, 0), (0, pad), (0, 0)))
        else:
            over = int((self.n_objects > k).sum())
            if over and not truncate:
                raise ValueError(
                    f"{over} events have more than {k} objects; pass truncate=True to cut them"
                )
            types, p4 = self.types[:, :k].copy(), self.p4[:, :k].copy()
        return dataclasses.replace(self, types=types, p4=p4, meta=dict(self.meta))

    def sorted(self) -> Events:
        """Return a copy with objects in Dark Machines order (see module docstring)."""
        types, p4 = sort_dark_machines(self.types, self.p4)
        return dataclasses.replace(self, types=types, p4=p4, meta=dict(self.meta))

    # ------------------------------------------------------------------ interop
    def to_awkward(self) -> Any:
        """awkward Array, one record per event, objects as vector ``Momentum4D`` (GeV).

        Layout and examples: :mod:`fastmc.interop`.  ``Events.from_awkward`` inverts it.
        """
        from fastmc.interop import events_to_awkward

        return events_to_awkward(self)

    @classmethod
    def from_awkward(
        cls, array: Any, *, max_objects: int | None = None, truncate: bool = False
    ) -> Events:
        """Events from an awkward Array of events (see :func:`fastmc.interop.events_from_awkward`;
        ``ak.from_parquet`` of a fastmc file works too)."""
        from fastmc.interop import events_from_awkward

        return events_from_awkward(array, max_objects=max_objects, truncate=truncate)

    def to_pandas(self, level: str = "events") -> Any:
        """pandas DataFrame, one row per event (``level="events"``) or per object
        (``level="objects"``, MultiIndex entry/object); needs the ``pandas`` extra.
        Columns and units: :func:`fastmc.interop.events_to_pandas`."""
        from fastmc.interop import events_to_pandas

        return events_to_pandas(self, level)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ kinematics
    @property
    def pt(self) -> np.ndarray:
        """pT of every object slot, GeV, float32 [N, K] (0 for padding)."""
        return self.p4[..., PT]

    def counts(self) -> dict[str, np.ndarray]:
        """Objects per type per event: ``{"j": int [N], "b": ..., ...}``."""
        return {name: (self.types == code).sum(axis=1) for name, code in TYPE_CODES.items()}

    def mask(self, *type_names: str) -> np.ndarray:
        """Boolean [N, K]: slots whose type is one of ``type_names`` (e.g. ``"j", "b"``)."""
        codes = [TYPE_CODES[t] for t in type_names]
        return np.isin(self.types, codes)

    def ht(self) -> np.ndarray:
        """Scalar sum of jet (j and b) pT per event, GeV, float64 [N]."""
        return np.where(self.mask("j", "b"), self.pt, 0).sum(axis=1, dtype=np.float64)

    def cartesian(self) -> np.ndarray:
        """(E, px, py, pz) of every slot, GeV, float64 [N, K, 4] (0 for padding)."""
        e, pt, eta, phi = (self.p4[..., i].astype(np.float64) for i in range(4))
        return np.stack([e, pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1)

    def mass(self) -> np.ndarray:
        """Invariant mass of every object, GeV, float64 [N, K] (sqrt of max(m^2, 0))."""
        c = self.cartesian()
        m2 = c[..., 0] ** 2 - (c[..., 1:] ** 2).sum(axis=-1)
        return np.sqrt(np.clip(m2, 0, None))
