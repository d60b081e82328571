"""Classifier two-sample test: AUC against the analytic optimum, Hanley-McNeil error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from fastmc.evaluate.classifier import auc_error, classifier_test


def test_hanley_mcneil_error():
    # Hanley & McNeil (1982) table: AUC 0.8 with 50 + 50 cases has SE ~ 0.044
    assert auc_error(0.8, 50, 50) == pytest.approx(0.0441, abs=5e-4)
    # for AUC = 0.5 the formula reduces to sqrt((n_pos + n_neg + 1) / (12 n_pos n_neg))
    assert auc_error(0.5, 400, 300) == pytest.approx(math.sqrt(701 / (12 * 400 * 300)), rel=1e-9)
    assert math.isnan(auc_error(0.7, 0, 10))


def test_shifted_gaussians_reach_the_optimal_auc(rng):
    # one informative feature shifted by 1 sigma: optimal AUC = Phi(1 / sqrt 2) = 0.760
    x0 = rng.normal(size=(4000, 3))
    x1 = rng.normal(size=(4000, 3))
    x1[:, 0] += 1.0
    res = classifier_test(x0, x1, seed=3)
    optimum = stats.norm.cdf(1 / math.sqrt(2))
    assert res.auc == pytest.approx(optimum, abs=3 * res.auc_err + 0.01)
    assert res.n_train == 4000 and res.n_test == 4000
    assert 0.005 < res.auc_err < 0.012
    # the analytic-score AUC agrees with sklearn's roc_auc_score on the same kind of data
    score = np.concatenate([x0[:, 0], x1[:, 0]])
    y = np.r_[np.zeros(4000), np.ones(4000)]
    assert roc_auc_score(y, score) == pytest.approx(optimum, abs=0.015)


def test_same_distribution_gives_half_and_nan_is_fine(rng):
    x0, x1 = rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4))
    x0[rng.random(2000) < 0.3, 1] = np.nan
    x1[rng.random(2000) < 0.3, 1] = np.nan
    x0[:, 3] = np.nan  # a column missing everywhere is not fatal
    x1[:, 3] = np.nan
    x0[:, 0] = np.nan  # a column with 3 values in all (the early-stopping split may hold all)
    x1[:, 0] = np.nan
    x1[:3, 0] = 1.0
    res = classifier_test(x0, x1, seed=0)
    assert abs(res.auc - 0.5) < 3 * res.auc_err
    # a difference only in how often a value is missing is found
    x2 = x1.copy()
    x2[rng.random(2000) < 0.3, 2] = np.nan
    assert classifier_test(x0, x2, seed=0).auc > 0.55


def test_classifier_rejects_bad_input(rng):
    with pytest.raises(ValueError, match="at least 10"):
        classifier_test(rng.normal(size=(5, 2)), rng.normal(size=(50, 2)))
    with pytest.raises(ValueError, match="test_fraction"):
        classifier_test(rng.normal(size=(50, 2)), rng.normal(size=(50, 2)), test_fraction=1.0)
