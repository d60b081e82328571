"""Structure sampler: the empirical distribution of object-type patterns of training events.

An event's **pattern** is the ordered tuple of its object types in Dark Machines order (e.g.
``j j b j b m+``).  :class:`PatternDistribution` counts the patterns of the training events and
draws new ones with their observed frequencies, so that the numbers of objects of every type
in generated events follow the training sample exactly (up to sampling noise) and every
generated pattern is a training pattern.  It is stored as two tensors (``patterns`` int8
[P, L], ``counts`` int64 [P]) in safetensors or as JSON (names and counts); never pickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from fastmc.events import TYPE_CODES, TYPE_NAMES

__all__ = ["PatternDistribution"]


def _keys(types: torch.Tensor) -> torch.Tensor:
    """A unique int64 key per pattern row, ``types`` int [N, L] with codes 0..7 (0 last)."""
    types = types.long()
    n, length = types.shape
    if length > 20:
        raise ValueError(f"patterns longer than 20 objects are not supported, got {length}")
    powers = 8 ** torch.arange(length - 1, -1, -1, device=types.device, dtype=torch.long)
    return (types * powers).sum(dim=1) if n else torch.zeros(0, dtype=torch.long)


class PatternDistribution:
    """Empirical distribution of object-type patterns.

    Attributes
    ----------
    patterns : int8 [P, L]
        The distinct patterns, type codes padded with 0, most frequent first.
    counts : int64 [P]
        Training events with each pattern.
    """

    def __init__(self, patterns: torch.Tensor, counts: torch.Tensor) -> None:
        patterns = torch.as_tensor(patterns).to("cpu", torch.int8)
        counts = torch.as_tensor(counts).to("cpu", torch.long)
        if patterns.ndim != 2 or counts.shape != (patterns.shape[0],):
            raise ValueError(
                f"patterns must be [P, L] and counts [P], got {tuple(patterns.shape)} and "
                f"{tuple(counts.shape)}"
            )
        if patterns.shape[0] == 0:
            raise ValueError("a pattern distribution needs at least one pattern")
        if bool((counts <= 0).any()):
            raise ValueError("pattern counts must be positive")
        if patterns.numel() and (int(patterns.min()) < 0 or int(patterns.max()) > 7):
            raise ValueError("pattern type codes must be 0..7")
        order = torch.argsort(-counts, stable=True)
        self.patterns = patterns[order].contiguous()
        self.counts = counts[order].contiguous()
        keys = _keys(self.patterns)
        self._sorted_keys, self._key_order = torch.sort(keys)
        if bool((self._sorted_keys[1:] == self._sorted_keys[:-1]).any()):
            raise ValueError("patterns must be distinct")

    # ------------------------------------------------------------------ construction
    @classmethod
    def fit(cls, types: torch.Tensor | np.ndarray) -> PatternDistribution:
        """Count the patterns of events ``types`` int [N, K] (Dark Machines order, 0 = padding)."""
        types = torch.as_tensor(np.asarray(types) if isinstance(types, np.ndarray) else types)
        types = types.to("cpu", torch.long)
        if types.ndim != 2 or types.shape[0] == 0:
            raise ValueError(f"need types of shape [N, K] with N > 0, got {tuple(types.shape)}")
        width = max(int((types > 0).sum(dim=1).max()), 1)
        # objects are packed to the left in Dark Machines order; keep the occupied width
        trimmed = types[:, :width]
        uniq, counts = torch.unique(trimmed, dim=0, return_counts=True)
        return cls(uniq, counts)

    # ------------------------------------------------------------------ queries
    @property
    def n_patterns(self) -> int:
        return int(self.patterns.shape[0])

    @property
    def width(self) -> int:
        """L, the length of the longest pattern."""
        return int(self.patterns.shape[1])

    @property
    def probabilities(self) -> torch.Tensor:
        """float64 [P], the frequency of each pattern."""
        return self.counts.double() / self.counts.sum()

    def names(self) -> list[str]:
        """Patterns as strings of Dark Machines type names, e.g. ``"j j b m+"``."""
        return [" ".join(TYPE_NAMES[int(t)] for t in row if int(t)) for row in self.patterns]

    def index_of(self, types: torch.Tensor) -> torch.Tensor:
        """Pattern index of each event, int64 [N] (-1 for a pattern not in the distribution).

        ``types`` int [N, K] in Dark Machines order, any device; the result is on its device.
        """
        dev = types.device
        types = types.long()
        n, k = types.shape
        width = self.width
        if k > width:
            too_long = (types[:, width:] > 0).any(dim=1)
            types = types[:, :width]
        else:
            too_long = torch.zeros(n, dtype=torch.bool, device=dev)
            types = torch.nn.functional.pad(types, (0, width - k))
        keys = _keys(types)
        skeys = self._sorted_keys.to(dev)
        pos = torch.searchsorted(skeys, keys).clamp(max=len(skeys) - 1)
        found = (skeys[pos] == keys) & ~too_long
        return torch.where(found, self._key_order.to(dev)[pos], torch.full_like(pos, -1))

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` pattern indices (int64 [n], on the generator's device) by frequency."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        dev = generator.device if generator is not None else torch.device("cpu")
        if n == 0:
            return torch.zeros(0, dtype=torch.long, device=dev)
        probs = self.probabilities.to(dev, torch.float64)
        return torch.multinomial(probs, n, replacement=True, generator=generator)

    def types(self, index: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """Type codes int64 [N, width] of patterns ``index`` (int [N]); width defaults to L."""
        width = self.width if width is None else width
        if width < self.width and bool((self.patterns[:, width:] > 0).any()):
            raise ValueError(f"width {width} is smaller than the longest pattern ({self.width})")
        pats = self.patterns.to(index.device).long()[index]
        if width >= pats.shape[1]:
            return torch.nn.functional.pad(pats, (0, width - pats.shape[1]))
        return pats[:, :width].contiguous()

    # ------------------------------------------------------------------ storage
    def to_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """``{prefix + "patterns": int8 [P, L], prefix + "counts": int64 [P]}`` (for safetensors)."""
        return {f"{prefix}patterns": self.patterns.clone(), f"{prefix}counts": self.counts.clone()}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], prefix: str = "") -> PatternDistribution:
        """Inverse of :meth:`to_tensors`."""
        return cls(tensors[f"{prefix}patterns"], tensors[f"{prefix}counts"])

    def to_json(self) -> dict[str, Any]:
        """``{"patterns": [{"types": "j j b", "count": 12}, ...]}``, most frequent first."""
        return {
            "patterns": [
                {"types": name, "count": int(c)}
                for name, c in zip(self.names(), self.counts.tolist(), strict=True)
            ]
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PatternDistribution:
        """Inverse of :meth:`to_json`; ValueError naming an unknown type."""
        rows = data["patterns"]
        width = max([len(r["types"].split()) for r in rows] + [1])
        pats = torch.zeros(len(rows), width, dtype=torch.int8)
        for i, r in enumerate(rows):
            for j, name in enumerate(r["types"].split()):
                if name not in TYPE_CODES:
                    raise ValueError(f"pattern {i}: unknown object type {name!r}")
                pats[i, j] = TYPE_CODES[name]
        return cls(pats, torch.tensor([int(r["count"]) for r in rows]))
