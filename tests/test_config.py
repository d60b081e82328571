"""fastmc.config: dict -> validated frozen dataclass, --set parsing, ConfigError."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from fastmc.config import check_config, config_to_dict, from_dict, parse_assignments, setting
from fastmc.errors import ConfigError, FastMCError


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Example:
    n: int = setting(3, ge=1)
    rate: float = setting(0.5, gt=0, lt=1)
    widths: tuple[int, ...] = setting((8, 8), ge=1, nonempty=True)
    mode: Literal["fast", "slow"] = "fast"
    flag: bool = False
    limit: float | None = setting(None, gt=0)
    name: str = "x"

    def __post_init__(self) -> None:
        check_config(self)


def test_valid_values_and_lists_become_tuples() -> None:
    cfg = from_dict(_Example, {"n": 4, "rate": 1e-3, "widths": [4, 2], "limit": 2})
    assert cfg.widths == (4, 2) and cfg.limit == 2
    assert config_to_dict(cfg)["widths"] == [4, 2]
    assert from_dict(_Example, None) == _Example()
    assert from_dict(_Example, config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"n": 0}, r"_Example\.n must be a positive integer, got 0"),
        ({"n": True}, r"_Example\.n must be an integer, got True"),
        ({"n": 2.5}, r"_Example\.n must be an integer"),
        ({"rate": 1}, r"_Example\.rate must be < 1"),
        ({"rate": "0.1"}, r"_Example\.rate must be a number"),
        ({"widths": []}, r"_Example\.widths needs at least one entry"),
        ({"widths": [8, 0]}, r"_Example\.widths must be a list of positive integers"),
        ({"mode": "medium"}, r"_Example\.mode must be one of 'fast', 'slow'"),
        ({"flag": "yes"}, r"_Example\.flag must be true or false"),
        ({"limit": -1}, r"_Example\.limit must be > 0"),
        ({"nmae": "y"}, r"unknown _Example setting\(s\): nmae; known settings are"),
    ],
)
def test_clear_errors(data, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        from_dict(_Example, data, source=None)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FastMCError)


def test_source_prefixes_the_error() -> None:
    with pytest.raises(ConfigError, match=r"^run\.yaml: _Example\.n must be"):
        from_dict(_Example, {"n": -1}, source="run.yaml")


def test_parse_assignments_is_typed_by_the_fields() -> None:
    got = parse_assignments(
        _Example,
        ["n=5", "rate=0.25", "widths=16,4", "mode=slow", "flag=true", "limit=none", "name=12"],
    )
    assert got == {"n": 5, "rate": 0.25, "widths": (16, 4), "mode": "slow", "flag": True,
                   "limit": None, "name": "12"}
    assert from_dict(_Example, got).widths == (16, 4)
    assert parse_assignments(_Example, ["widths=[3, 2]"]) == {"widths": (3, 2)}
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(_Example, ["n"])
    with pytest.raises(ConfigError, match="unknown _Example setting 'm'"):
        parse_assignments(_Example, ["m=1"])


def test_a_single_value_of_a_list_setting() -> None:
    assert parse_assignments(_Example, ["widths=16"]) == {"widths": (16,)}
    with pytest.raises(ConfigError, match=r"widths must be a list of integers, got \('a',\)"):
        from_dict(_Example, parse_assignments(_Example, ["widths=a"]))


def test_non_finite_settings_refused() -> None:
    """NaN slips through every comparison; a bounded float setting refuses it (issue 15)."""
    import math

    from fastmc.config import from_dict
    from fastmc.errors import ConfigError
    from fastmc.models.vae import BetaVAEConfig
    from fastmc.workflows.train_config import TrainConfig

    for cls, key in ((BetaVAEConfig, "beta"), (TrainConfig, "lr"), (TrainConfig, "min_delta")):
        for bad in (math.nan, math.inf):
            with pytest.raises(ConfigError, match=f"{key} must be a finite number"):
                from_dict(cls, {key: bad})
