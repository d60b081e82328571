"""Marginal closure (fastmc.evaluate.closure): known answers on Gaussian samples."""

from __future__ import annotations

import numpy as np
import pytest

from fastmc.evaluate.closure import marginal_closure

NAMES = ("a", "b", "c")


def _sample(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    x = rng.normal(size=(n, 3))
    x[:, 0] += shift
    x[rng.random(n) < 0.2, 2] = np.nan  # a feature with missing values
    return x


def test_samples_of_one_density_close() -> None:
    rng = np.random.default_rng(0)
    per_seed = [marginal_closure(_sample(rng, 20_000), _sample(rng, 20_000), names=NAMES).mean
                for _ in range(5)]
    assert 0.6 < np.mean(per_seed) < 1.5  # chi2 / ndf ~ 1


def test_a_shift_fails_and_its_density_ratio_restores_it() -> None:
    rng = np.random.default_rng(1)
    target, shifted = _sample(rng, 20_000), _sample(rng, 20_000, shift=0.2)
    raw = marginal_closure(target, shifted, names=NAMES)
    assert raw.worst(1)[0][0] == "a" and raw.chi2_ndf[0] > 10
    # w = N(x; 0, 1) / N(x; 0.2, 1): the exact density ratio of the shifted feature
    w = np.exp(-shifted[:, 0] ** 2 / 2 + (shifted[:, 0] - 0.2) ** 2 / 2)
    fixed = marginal_closure(target, shifted, w, names=NAMES)
    assert fixed.chi2_ndf[0] < 3 and fixed.mean < 2


def test_missing_value_shares_count() -> None:
    rng = np.random.default_rng(2)
    target, other = _sample(rng, 20_000), _sample(rng, 20_000)
    other[rng.random(len(other)) < 0.1, 2] = np.nan  # 28% missing instead of 20%
    c = marginal_closure(target, other, names=NAMES)
    assert c.worst(1)[0][0] == "c" and c.chi2_ndf[2] > 10


def test_bad_inputs_are_refused() -> None:
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="must agree"):
        marginal_closure(x, np.zeros((10, 2)), names=NAMES)
    with pytest.raises(ValueError, match="weights"):
        marginal_closure(x, x, -np.ones(10), names=NAMES)
    assert marginal_closure(x, x, names=NAMES).names == ()  # no feature with 3 values
