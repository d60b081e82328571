"""What a generated sample's generator did besides drawing, read from the file's metadata
(``fastmc generate`` writes it): for the evaluation report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["cap_note", "generation_note", "generation_record"]


def cap_note(refinement: Mapping[str, Any]) -> str:
    """What a run's refinement (its ``refinement`` metadata) did at the weight cap, in words:
    "weights not capped", or "N above the weight cap" (", kept with weight w / cap" for
    partial unweighting)."""
    mode = refinement.get("mode")
    if mode == "weights-uncapped":
        return "weights not capped"
    return (f"{refinement['clipped']:,} above the weight cap"
            + (", kept with weight w / cap" if mode == "reject-uncapped" else ""))


def generation_record(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a sample's generator did besides drawing, from the file's metadata (``fastmc
    generate``): events its model rejected inside ``sample`` (``model_rejection``) and the
    classifier refinement's counts (``refinement``); None for a file without them (Monte
    Carlo, other generators)."""
    out = {k: meta.get(k) for k in ("model_rejection", "refinement") if meta.get(k) is not None}
    return out or None


def generation_note(record: Mapping[str, Any] | None) -> str | None:
    """One line for the report: the shares of drawn events rejected and refined away."""
    if not record:
        return None
    notes = []
    mr = record.get("model_rejection") or {}
    if mr.get("rejected"):
        notes.append(f"the model rejected {100 * mr['rejected_share']:.1f}% of {mr['drawn']:,} "
                     "drawn events")
    r = record.get("refinement") or {}
    if r.get("drawn"):
        closure = (r.get("fit") or {}).get("closure") or {}
        fit = (f"; its fit's marginal closure (chi2/ndf) {closure['before']:.2f} -> "
               f"{closure['after']:.2f}" if closure.get("after") is not None else "")
        weighted = str(r.get("mode", "")).startswith("weights")
        head = (f"as event weights on all {r['drawn']:,} drawn events (effective share "
                f"{r['effective_share']:.3f}, " if weighted else
                f"kept {100 * r['acceptance']:.1f}% of {r['drawn']:,} drawn events (")
        notes.append(f"classifier refinement {head}{cap_note(r)}{fit})"
                     + ("; W1's floor is unweighted (weighted W1 fluctuates more)" if weighted else ""))
    return "; ".join(notes) or None
