"""The written outcome of a study: ``study.json``, the ranking as ``summary.md`` and, for
several processes, a ``report/index.html`` that links the per-process evaluation reports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

__all__ = ["StudyResult", "summary_markdown", "write_summary"]


@dataclasses.dataclass
class StudyResult:
    """Rows of the ranking (one per process, model and prior) and where things were written."""

    rows: list[dict[str, Any]]
    reports: dict[str, Path]
    output: Path

    def table(self) -> list[dict[str, Any]]:
        return self.rows


def write_summary(result: StudyResult, *, name: str, config: dict[str, Any]) -> None:
    """Write study.json, summary.md and (several processes) report/index.html atomically."""
    from fastmc.io.atomic import atomic_path

    with atomic_path(result.output / "study.json") as tmp:
        tmp.write_text(json.dumps({"config": config, "rows": result.rows,
                                   "reports": {k: str(v) for k, v in result.reports.items()}},
                                  indent=1, default=str))
    with atomic_path(result.output / "summary.md") as tmp:
        tmp.write_text(summary_markdown(result.rows))
    if len(result.reports) > 1:
        links = "".join(f'<li><a href="{p.relative_to(result.output / "report")}">{k}</a></li>'
                        for k, p in result.reports.items())
        html = (f"<!doctype html><meta charset='utf-8'><title>{name}</title>"
                f"<h1>{name}</h1><ul>{links}</ul><pre>{summary_markdown(result.rows)}</pre>")
        with atomic_path(result.output / "report" / "index.html") as tmp:
            tmp.write_text(html)


def _num(x: Any, fmt: str) -> str:
    try:
        return "-" if x is None or x != x else format(x, fmt)
    except (TypeError, ValueError):
        return str(x)


def summary_markdown(rows: list[dict[str, Any]]) -> str:
    """The ranking as a Markdown table (AUC with its floor, W1/floor ratios, physicality, speed)."""
    head = ("| process | rank | sample | AUC (floor) | W1/floor median | W1/floor worst (observable) "
            "| FPD (floor) | physicality | events/s |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        lines.append(
            f"| {r['process']} | {r['rank']} | {r['label']} | {_num(r['auc'], '.3f')} ± "
            f"{_num(r['auc_err'], '.3f')} ({_num(r['auc_floor'], '.3f')}) | "
            f"{_num(r['w1_ratio_median'], '.2f')} | {_num(r['w1_ratio_max'], '.2f')} ({r['w1_worst']}) | "
            f"{_num(r['fpd'], '.4f')} ({_num(r['fpd_floor'], '.4f')}) | "
            f"{_num(100 * r['physicality'], '.1f')}% | {_num(r.get('events_per_s'), ',.0f')} |"
        )
    return head + "\n".join(lines) + "\n"
