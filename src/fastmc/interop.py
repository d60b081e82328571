"""Events <-> awkward (with ``vector`` behaviours) and pandas.

The awkward layout is the one of a fastmc Parquet file read with ``ak.from_parquet``, with the
objects named ``Momentum4D`` so that ``vector``'s methods work on them::

    N * {event_id: int64, process: categorical[string], weight: float64,
         met: float32, met_phi: float32,
         objects: var * Momentum4D[obj_type: int8, E: float32, pt: float32,
                                   eta: float32, phi: float32]}

Units: GeV for ``E``, ``pt``, ``met``; radians for ``phi``, ``met_phi``.  ``obj_type`` holds the
type codes 1..7 = j, b, e-, e+, m-, m+, g (:data:`fastmc.events.TYPE_NAMES`; padding is dropped).
The ``vector`` behaviours travel with the array (``array.behavior``): nothing is registered
globally, so importing fastmc leaves ``ak.behavior`` alone.

    >>> arr = events.to_awkward()
    >>> dijet = arr.objects[:, 0] + arr.objects[:, 1]     # events with >= 2 objects
    >>> dijet.mass                                        # GeV

pandas is an optional extra (``pip install 'fastmc[pandas]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fastmc.errors import require
from fastmc.events import DEFAULT_MAX_OBJECTS, TYPE_LEGEND, TYPE_NAMES, UNITS, Events

if TYPE_CHECKING:
    import awkward as ak
    import pandas as pd

    from fastmc.evaluate.observables import Observables

__all__ = [
    "OBJECT_FIELDS",
    "TYPE_LEGEND",
    "UNITS",
    "events_from_awkward",
    "events_to_awkward",
    "events_to_pandas",
    "observables_to_pandas",
]

#: The fields of one object, in file order (Parquet, awkward).
OBJECT_FIELDS: tuple[str, ...] = ("obj_type", "E", "pt", "eta", "phi")
_MAX_OBJECTS_PARAM = "fastmc_max_objects"


def _vector_behavior() -> dict[Any, Any]:
    """vector's awkward behaviours (a dict to attach to arrays; nothing global)."""
    require("vector", "core")
    import vector.backends.awkward as vba

    return vba.behavior


# ---------------------------------------------------------------------------------- awkward
def events_to_awkward(events: Events) -> ak.Array:
    """Events -> awkward Array of N records (layout in the module docstring).

    The objects are ``Momentum4D`` (vector behaviours attached); padding is dropped and the
    width K is kept as the parameter ``fastmc_max_objects`` so that
    :func:`events_from_awkward` restores the same Events.
    """
    import awkward as ak

    valid = events.types != 0
    counts = valid.sum(axis=1)
    offsets = np.zeros(len(events) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    p4 = events.p4[valid]
    columns = [events.types[valid], *(np.ascontiguousarray(p4[:, i]) for i in range(4))]
    objects = ak.contents.ListOffsetArray(
        ak.index.Index64(offsets),
        ak.contents.RecordArray(
            [ak.contents.NumpyArray(c) for c in columns], list(OBJECT_FIELDS),
            length=int(offsets[-1]), parameters={"__record__": "Momentum4D"},
        ),
    )
    names = ak.to_layout(np.asarray(events.process_names, dtype=str).tolist() or [""])
    process = ak.contents.IndexedArray(
        ak.index.Index64(events.process_code.astype(np.int64)), names,
        parameters={"__array__": "categorical"},
    )
    scalars = {
        "event_id": events.event_id, "weight": events.weight,
        "met": events.met, "met_phi": events.met_phi,
    }
    fields = ["event_id", "process", "weight", "met", "met_phi", "objects"]
    contents = [
        ak.contents.NumpyArray(scalars["event_id"]), process,
        *(ak.contents.NumpyArray(scalars[f]) for f in ("weight", "met", "met_phi")), objects,
    ]
    layout = ak.contents.RecordArray(
        contents, fields, length=len(events),
        parameters={_MAX_OBJECTS_PARAM: int(events.max_objects)},
    )
    return ak.Array(layout, behavior=_vector_behavior())


def _numpy(array: Any, what: str) -> np.ndarray:
    """A flat awkward array without missing values -> numpy; ValueError naming ``what``."""
    import awkward as ak

    if ak.any(ak.is_none(array, axis=-1)):
        raise ValueError(f"{what} has missing values (None); fill or drop them first")
    return ak.to_numpy(ak.drop_none(array)) if array.ndim == 1 else ak.to_numpy(array)


def _process(array: Any, n: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """(codes int32 [N], names) from a string or categorical column."""
    import awkward as ak
    import pyarrow as pa
    import pyarrow.compute as pc

    if ak.any(ak.is_none(array, axis=0)):
        raise ValueError("process has missing values (None)")
    arrow = ak.to_arrow(ak.drop_none(array), extensionarray=False)
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    if not pa.types.is_dictionary(arrow.type):
        arrow = pc.dictionary_encode(arrow)
    names = tuple(str(x) for x in arrow.dictionary.to_pylist())
    codes = arrow.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    if len(set(names)) != len(names):  # a dictionary with repeats: merge them
        uniq, inv = np.unique(np.asarray(names, dtype=str), return_inverse=True)
        names, codes = tuple(uniq.tolist()), inv.astype(np.int32)[codes]
    return codes.reshape(n), names


def _object_columns(objects: Any) -> dict[str, Any]:
    """obj_type, E, pt, eta, phi of jagged object records (any vector coordinates)."""
    import awkward as ak

    fields = set(ak.fields(objects))
    type_field = "obj_type" if "obj_type" in fields else "type" if "type" in fields else None
    if type_field is None:
        raise ValueError(
            f"objects need a type-code field 'obj_type' (1..7 = {' '.join(TYPE_NAMES[1:])}); "
            f"got fields {sorted(fields)}"
        )
    out = {"obj_type": objects[type_field]}
    if {"E", "pt", "eta", "phi"} <= fields:
        out |= {f: objects[f] for f in ("E", "pt", "eta", "phi")}
        return out
    # any other coordinates vector understands (px/py/pz/E, pt/eta/phi/mass, ...)
    vec = ak.Array(objects, with_name="Momentum4D", behavior=_vector_behavior())
    try:
        out |= {"E": vec.E, "pt": vec.pt, "eta": vec.eta, "phi": vec.phi}
    except Exception as exc:  # vector names the missing coordinate
        raise ValueError(
            f"objects need four-vector fields (E, pt, eta, phi or any set vector accepts, "
            f"e.g. px, py, pz, E); got {sorted(fields)}: {exc}"
        ) from None
    return out


def events_from_awkward(
    array: ak.Array, *, max_objects: int | None = None, truncate: bool = False
) -> Events:
    """awkward Array of events -> Events (the inverse of :func:`events_to_awkward`).

    Required fields: ``objects`` (jagged records with ``obj_type`` (or ``type``, as in Parquet
    files of fastmc <= 0.1) and a four-vector: ``E, pt, eta, phi`` or any coordinates vector
    accepts, GeV), ``met`` (GeV) and ``met_phi`` (rad).  Optional: ``event_id`` (default
    0..N-1), ``process`` (strings; default ``"unknown"``), ``weight`` (default 1).  Works on
    ``ak.from_parquet`` of a fastmc Parquet file.  The objects must already be in Dark
    Machines order (see :meth:`Events.sorted`).

    ``max_objects`` is the width K (default: the ``fastmc_max_objects`` parameter written by
    :func:`events_to_awkward`, else the larger of 19 and the largest multiplicity).  Events
    with more than K objects raise ValueError unless ``truncate=True`` (last objects cut).
    """
    import awkward as ak

    array = ak.Array(array)
    fields = set(ak.fields(array))
    missing = {"objects", "met", "met_phi"} - fields
    if missing:
        raise ValueError(f"an events array needs the fields {sorted(missing)}; got {sorted(fields)}")
    n = len(array)
    objects = array["objects"]
    if ak.any(ak.is_none(objects, axis=0)):
        raise ValueError("objects has missing lists (None)")
    objects = ak.drop_none(objects, axis=0)
    counts = ak.to_numpy(ak.num(objects, axis=1)).astype(np.int64)
    cols = {f: _numpy(ak.flatten(c), f"objects.{f}") for f, c in _object_columns(objects).items()}
    k = max_objects if max_objects is not None else ak.parameters(array).get(_MAX_OBJECTS_PARAM)
    if k is None:
        k = max(DEFAULT_MAX_OBJECTS, int(counts.max(initial=0)))
    k = int(k)
    if k < 1:
        raise ValueError(f"max_objects must be >= 1, got {k}")
    over = counts > k
    if over.any() and not truncate:
        raise ValueError(
            f"{int(over.sum())} events have more than max_objects={k} objects (entry "
            f"{int(np.argmax(over))} has {int(counts[over][0])}); pass a larger max_objects or "
            "truncate=True"
        )
    row = np.repeat(np.arange(n), counts)
    col = np.arange(row.size) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = col < k
    types = np.zeros((n, k), np.int8)
    p4 = np.zeros((n, k, 4), np.float32)
    types[row[keep], col[keep]] = cols["obj_type"][keep]
    p4[row[keep], col[keep]] = np.stack([cols[f] for f in ("E", "pt", "eta", "phi")], -1)[keep]
    if "process" in fields:
        codes, names = _process(array["process"], n)
    else:
        codes, names = np.zeros(n, np.int32), ("unknown",)
    event_id = _numpy(array["event_id"], "event_id") if "event_id" in fields else np.arange(n)
    weight = _numpy(array["weight"], "weight") if "weight" in fields else np.ones(n)
    return Events(
        types=types, p4=p4, met=_numpy(array["met"], "met"),
        met_phi=_numpy(array["met_phi"], "met_phi"), event_id=event_id, process_code=codes,
        process_names=names, weight=weight,
    )


# ---------------------------------------------------------------------------------- pandas
def _pandas() -> Any:
    return require("pandas", "pandas")


def events_to_pandas(events: Events, level: Literal["events", "objects"] = "events") -> pd.DataFrame:
    """Events -> pandas DataFrame; needs the ``pandas`` extra.

    ``level="events"``: one row per event, index ``entry`` 0..N-1, columns ``event_id``,
    ``process`` (categorical), ``weight``, ``met`` (GeV), ``met_phi`` (rad), ``n_objects``.

    ``level="objects"``: one row per real object, MultiIndex (``entry``, ``object``) (the
    layout uproot uses for jagged branches), columns ``obj_type`` (1..7), ``name``
    (categorical j, b, e-, e+, m-, m+, g), ``E``, ``pt`` (GeV), ``eta``, ``phi`` (rad).
    Join the two on ``entry``.  ``df.attrs["units"]`` holds the units of every column.
    """
    pd = _pandas()
    if level == "events":
        df = pd.DataFrame(
            {
                "event_id": events.event_id,
                "process": pd.Categorical.from_codes(
                    events.process_code, categories=list(events.process_names)
                ),
                "weight": events.weight,
                "met": events.met,
                "met_phi": events.met_phi,
                "n_objects": events.n_objects,
            },
            index=pd.RangeIndex(len(events), name="entry"),
        )
    elif level == "objects":
        valid = events.types != 0
        entry, slot = np.nonzero(valid)
        p4 = events.p4[valid]
        types = events.types[valid]
        df = pd.DataFrame(
            {
                "obj_type": types,
                "name": pd.Categorical.from_codes(
                    types.astype(np.int64) - 1, categories=list(TYPE_NAMES[1:])
                ),
                **{f: p4[:, i] for i, f in enumerate(("E", "pt", "eta", "phi"))},
            },
            index=pd.MultiIndex.from_arrays([entry, slot], names=["entry", "object"]),
        )
    else:
        raise ValueError(f"level must be 'events' or 'objects', got {level!r}")
    df.attrs["units"] = {c: UNITS.get(c, "") for c in df.columns}
    df.attrs["type_codes"] = dict(TYPE_LEGEND)
    return df


def observables_to_pandas(obs: Observables | Events) -> pd.DataFrame:
    """The evaluation's observables (design.md section 4) as a DataFrame; ``pandas`` extra.

    ``obs`` is an :class:`~fastmc.evaluate.observables.Observables` or Events (then computed
    with :func:`~fastmc.evaluate.observables.compute_observables`).  One row per event (index
    ``entry``), one float64 column per observable (NaN where the object it needs is missing)
    plus ``weight``; ``df.attrs["units"]`` maps each column to its unit (GeV, rad or "").
    """
    pd = _pandas()
    if isinstance(obs, Events):
        from fastmc.evaluate.observables import compute_observables

        obs = compute_observables(obs)
    df = pd.DataFrame(
        np.asarray(obs.values), columns=list(obs.names),
        index=pd.RangeIndex(len(obs.weight), name="entry"),
    )
    df["weight"] = obs.weight
    df.attrs["units"] = {**dict(zip(obs.names, obs.units, strict=True)), "weight": UNITS["weight"]}
    return df
