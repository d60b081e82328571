"""Metrics: known answers, cross-checks against scipy, physicality checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from evalsynth import read_real, synthetic_events
from scipy import stats

from fastmc.evaluate import metrics as M


def test_identical_samples_give_zero(rng):
    x = rng.normal(size=500)
    w = rng.random(500)
    assert M.w1_ks(x, x) == (0.0, 0.0)
    assert M.w1_ks(x, x, w, w) == pytest.approx((0.0, 0.0), abs=1e-12)
    js, chi2 = M.histogram_distances(x, x, M.make_bins(x), w, w)
    assert js == pytest.approx(0.0, abs=1e-12) and chi2 == 0.0
    mu, cov = x.reshape(100, 5).mean(0), np.cov(x.reshape(100, 5), rowvar=False)
    assert M.frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)


def test_w1_ks_match_scipy(rng):
    for n, m in ((50, 80), (2000, 1500)):
        x, y = rng.normal(size=n), rng.normal(0.2, 1.3, size=m)
        x[::4] = np.round(x[::4], 1)  # ties
        y[::3] = np.round(y[::3], 1)
        wx, wy = rng.random(n), rng.random(m)
        w1, ks = M.w1_ks(x, y)
        assert w1 == pytest.approx(stats.wasserstein_distance(x, y), rel=1e-10)
        assert ks == pytest.approx(stats.ks_2samp(x, y).statistic, rel=1e-12)
        assert M.wasserstein1(x, y, wx, wy) == pytest.approx(stats.wasserstein_distance(x, y, wx, wy), rel=1e-9)
        # integer weights == repeated entries
        cx, cy = rng.integers(1, 4, n), rng.integers(1, 4, m)
        ks_w = M.ks_statistic(x, y, cx.astype(float), cy.astype(float))
        assert ks_w == pytest.approx(stats.ks_2samp(np.repeat(x, cx), np.repeat(y, cy)).statistic, rel=1e-12)


def test_nan_dropped_and_empty_gives_nan(rng):
    x = np.concatenate([rng.normal(size=100), [np.nan] * 50])
    y = rng.normal(size=80)
    assert M.wasserstein1(x, y) == pytest.approx(stats.wasserstein_distance(x[:100], y))
    assert math.isnan(M.wasserstein1(np.full(5, np.nan), y))
    assert all(math.isnan(v) for v in M.histogram_distances(np.full(5, np.nan), y, M.make_bins(y)))


def test_w1_of_shifted_gaussians_is_the_shift(rng):
    x, y = rng.normal(0, 1, 20000), rng.normal(0.5, 1, 20000)
    assert M.wasserstein1(x, y) == pytest.approx(0.5, abs=0.03)


def test_histogram_distances_bounds(rng):
    x = rng.normal(size=5000)
    edges = M.make_bins(x, n_bins=30)
    js, chi2 = M.histogram_distances(x, rng.normal(size=5000), edges)
    assert 0 <= js < 0.01 and 0.3 < chi2 < 2.0
    js, chi2 = M.histogram_distances(x, x + 100, edges)  # all in the overflow bin
    assert 0.99 < js <= 1.0 and chi2 > 100  # 0.1% of x share the overflow bin
    counts = M.make_bins(np.array([0, 1, 3]), "count")
    np.testing.assert_array_equal(counts, [-0.5, 0.5, 1.5, 2.5, 3.5, np.inf])


def test_frechet_distance_analytic():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    fd = M.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([0.0]), np.array([[1.0]]))
    assert fd == pytest.approx(1.0 + 1.0)
    # commuting covariances: sum over eigen-directions
    s1, s2 = np.diag([1.0, 9.0, 0.0]), np.diag([4.0, 1.0, 0.0])
    fd = M.frechet_distance(np.zeros(3), s1, np.ones(3), s2)
    assert fd == pytest.approx(3 + (1 - 2) ** 2 + (3 - 1) ** 2)


def test_fpd_of_shifted_gaussians(rng):
    d = 5
    shift = np.zeros(d)
    shift[:2] = 0.3  # |dmu|^2 = 0.18
    x = rng.normal(size=(20000, d))
    y = rng.normal(size=(20000, d)) + shift
    value, err = M.fpd(x, y, seed=1)
    assert value == pytest.approx(0.18, abs=0.02) and err >= 0
    same, _ = M.fpd(x, rng.normal(size=(20000, d)), seed=1)
    assert abs(same) < 0.01


def test_kpd_and_mmd(rng):
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.2
    k = lambda a, b: (a @ b / 3 + 1) ** 4  # noqa: E731
    xx = np.mean([k(x[i], x[j]) for i in range(40) for j in range(40) if i != j])
    yy = np.mean([k(y[i], y[j]) for i in range(30) for j in range(30) if i != j])
    xy = np.mean([k(a, b) for a in x for b in y])
    assert M.mmd_poly_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-9)
    a, b = rng.normal(size=(4000, 4)), rng.normal(size=(4000, 4))
    same, _ = M.kpd(a, b, seed=0, batch_size=1000)
    shifted, _ = M.kpd(a, b + 0.3, seed=0, batch_size=1000)
    assert abs(same) < 0.05 < shifted


def test_weighted_mmd_is_the_weighted_pair_mean(rng):
    x, y = rng.normal(size=(30, 3)), rng.normal(size=(25, 3)) + 0.2
    wx, wy = rng.uniform(0.2, 3.0, 30), rng.uniform(0.2, 3.0, 25)
    k = lambda a, b: (a @ b / 3 + 1) ** 4  # noqa: E731

    def wmean(a, wa, b, wb, same):
        pairs = [(wa[i] * wb[j], k(a[i], b[j])) for i in range(len(a)) for j in range(len(b))
                 if not (same and i == j)]
        return sum(w * v for w, v in pairs) / sum(w for w, _ in pairs)

    want = wmean(x, wx, x, wx, True) + wmean(y, wy, y, wy, True) - 2 * wmean(x, wx, y, wy, False)
    assert M.mmd_poly_unbiased(x, y, wx=wx, wy=wy) == pytest.approx(want, rel=1e-9)
    # unit (or constant) weights are the unweighted estimate
    assert M.mmd_poly_unbiased(x, y, wx=np.full(30, 7.0), wy=None) == pytest.approx(
        M.mmd_poly_unbiased(x, y), rel=1e-9)


def test_weights_that_are_the_density_ratio_close_fpd_and_kpd(rng):
    """x ~ N(0, 1) weighted by N(0.6, 1) / N(0, 1) follows y ~ N(0.6, 1): both distances drop
    to their null values, unweighted they see the shift (|dmu|^2 = 0.36 per shifted feature)."""
    d = 3
    x, y = rng.normal(size=(30000, d)), rng.normal(size=(30000, d))
    y[:, 0] += 0.6
    w = np.exp(0.6 * x[:, 0] - 0.18)
    raw, _ = M.fpd(x, y, seed=1)
    fixed, _ = M.fpd(x, y, seed=1, wx=w)
    assert raw == pytest.approx(0.36, abs=0.03) and abs(fixed) < 0.02
    raw_k, _ = M.kpd(x, y, seed=1, batch_size=2000)
    fixed_k, _ = M.kpd(x, y, seed=1, batch_size=2000, wx=w)
    assert raw_k > 0.1 and abs(fixed_k) < 0.2 * raw_k
    # constant weights change nothing
    assert M.fpd(x, y, seed=1, wx=np.full(len(x), 3.0))[0] == pytest.approx(raw, rel=1e-9)
    with pytest.raises(ValueError, match="wx must be finite, >= 0"):
        M.fpd(x, y, wx=-w)
    with pytest.raises(ValueError, match=r"wy must have shape \(30000,\)"):
        M.kpd(x, y, wy=w[:10])


def test_feature_scaler_log_and_presence():
    ev = synthetic_events(2000, seed=1)
    from fastmc.evaluate.observables import compute_observables

    obs = compute_observables(ev)
    sc = M.FeatureScaler(obs)
    f = sc.transform(obs)
    assert f.shape == (2000, len(obs.names) + 4) and np.isfinite(f).all()
    assert np.abs(f.mean(axis=0)).max() < 0.2  # standardised (0-fill of missing shifts a bit)
    assert sc.names[-1] == "has_lep2"


def test_physicality_checks():
    ev = synthetic_events(200, seed=2)
    p = M.physicality(ev)
    assert p["valid"] == 1.0 and p["n_events"] == 200
    assert set(p) == {"n_events", "valid", "known_types", "finite", "energy", "phi", "order", "jet_separation"}

    def broken(fn):
        e = dataclasses.replace(ev, types=ev.types.copy(), p4=ev.p4.copy(), met_phi=ev.met_phi.copy())
        fn(e)
        return M.physicality(e)

    def unknown(e):
        e.types[0, 0] = 9

    def energy(e):
        e.p4[1, 0, 0] = 0.5 * e.p4[1, 0, 1]

    def phi(e):
        e.p4[2, 0, 3] = 4.0

    def metphi(e):
        e.met_phi[3] = -3.2

    def order(e):
        e.types[4, :2] = e.types[4, [1, 0]]
        e.p4[4, :2] = e.p4[4, [1, 0]]

    def nan(e):
        e.p4[5, 0, 2] = np.nan

    def close_jets(e):  # the second jet 0.3 from the first: closer than the jet radius 0.6
        e.p4[6, 1, 2], e.p4[6, 1, 3] = e.p4[6, 0, 2] + 0.3, e.p4[6, 0, 3]

    for fn, check in ((unknown, "known_types"), (energy, "energy"), (phi, "phi"), (metphi, "phi"),
                      (order, "order"), (nan, "finite"), (close_jets, "jet_separation")):
        q = broken(fn)
        assert q[check] == pytest.approx(199 / 200), fn.__name__
        assert q["valid"] == pytest.approx(199 / 200), fn.__name__
    sel = M.physicality(ev, channel="chan3")
    assert sel["selection"] == pytest.approx(np.mean((ev.ht() >= 600) & (ev.met >= 100)))


def test_physicality_of_real_files_is_one(real_files):
    for path in real_files:
        p = M.physicality(read_real(path), channel="chan1")
        assert p["valid"] == 1.0, (path.name, p)
