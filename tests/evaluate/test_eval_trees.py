"""The tree-ensemble arrays of the refinement (fastmc.evaluate.trees): known answers and
scikit-learn's own predictions."""

from __future__ import annotations

import numpy as np
import pytest

from fastmc.evaluate.trees import TreeEnsemble

pytest.importorskip("sklearn")


def _stump() -> TreeEnsemble:
    """One tree: x0 <= 0.5 (NaN to the right) -> leaf -1, else -> leaf +2; baseline 0.25."""
    return TreeEnsemble(
        feature=np.array([0, 0, 0], np.int32), threshold=np.array([0.5, np.inf, np.inf]),
        missing_left=np.array([False, True, True]), child=np.array([1, 1, 2], np.int32),
        value=np.array([0.0, -1.0, 2.0]), roots=np.array([0], np.int32),
        depths=np.array([1], np.int32), baseline=0.25,
        depth=1, n_features=2,
    )


def test_a_hand_built_stump_gives_its_known_logits() -> None:
    x = np.array([[0.0, 9.0], [0.5, 9.0], [0.51, 9.0], [np.nan, 9.0], [-np.inf, np.nan]])
    np.testing.assert_array_equal(_stump().logit(x), [-0.75, -0.75, 2.25, 2.25, -0.75])


def _fitted(seed: int = 0, n: int = 6000, d: int = 7):
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[rng.random(x.shape) < 0.25] = np.nan
    z = np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) + np.isnan(x[:, 3])
    y = (z + rng.normal(size=n) > 0.3).astype(int)
    clf = HistGradientBoostingClassifier(max_iter=60, early_stopping=False, random_state=seed)
    return clf.fit(x, y), rng


@pytest.mark.parametrize("seed", [0, 1])
def test_logits_are_scikit_learns_predictions(seed: int) -> None:
    clf, rng = _fitted(seed)
    trees = TreeEnsemble.from_sklearn(clf)
    assert trees.n_trees == clf.n_iter_
    x = rng.normal(size=(3000, 7)) * 2
    x[rng.random(x.shape) < 0.3] = np.nan
    p = clf.predict_proba(x)[:, 1]
    logit = trees.logit(x, chunk=700)  # chunks of a size that does not divide N
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(logit, clf.decision_function(x), rtol=0, atol=1e-9)


def test_the_first_trees_are_the_classifier_at_that_iteration() -> None:
    clf, rng = _fitted(3)
    x = rng.normal(size=(400, 7))
    staged = list(clf.staged_decision_function(x))
    for k in (1, 17, clf.n_iter_):
        trees = TreeEnsemble.from_sklearn(clf, n_trees=k)
        assert trees.n_trees == k
        np.testing.assert_allclose(trees.logit(x), staged[k - 1], rtol=0, atol=1e-9)
    none = TreeEnsemble.from_sklearn(clf, n_trees=0)  # the baseline alone
    np.testing.assert_array_equal(none.logit(x), np.full(len(x), none.baseline))


def test_array_round_trip_keeps_every_logit() -> None:
    clf, rng = _fitted(2)
    trees = TreeEnsemble.from_sklearn(clf)
    arrays, scalars = trees.to_arrays()
    again = TreeEnsemble.from_arrays(arrays, scalars)
    x = rng.normal(size=(500, 7))
    np.testing.assert_array_equal(again.logit(x), trees.logit(x))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        _stump().logit(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="child points outside"):
        TreeEnsemble(feature=np.zeros(1, np.int32), threshold=np.zeros(1), missing_left=np.ones(1, bool),
                     child=np.array([3], np.int32), value=np.zeros(1), roots=np.zeros(1, np.int32),
                     depths=np.zeros(1, np.int32),
                     baseline=0.0, depth=0, n_features=1)
    with pytest.raises(ValueError, match="fitted HistGradientBoostingClassifier"):
        TreeEnsemble.from_sklearn(object())


def test_concatenated_ensembles_sum_their_logits() -> None:
    a, rng = _fitted(4)
    b, _ = _fitted(5)
    parts = [TreeEnsemble.from_sklearn(a), TreeEnsemble.from_sklearn(b, n_trees=9),
             TreeEnsemble.from_sklearn(a, n_trees=1)]
    both = TreeEnsemble.concatenate(parts)
    assert both.n_trees == sum(p.n_trees for p in parts)
    assert (np.diff(both.depths) <= 0).all()
    x = rng.normal(size=(800, 7))
    x[rng.random(x.shape) < 0.2] = np.nan
    np.testing.assert_allclose(both.logit(x), sum(p.logit(x) for p in parts), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="same features"):
        TreeEnsemble.concatenate([parts[0], _stump()])


def test_torch_walk_gives_numpys_logits() -> None:
    pytest.importorskip("torch")
    clf, rng = _fitted(6)
    trees = TreeEnsemble.from_sklearn(clf)
    x = rng.normal(size=(1500, 7)) * 2
    x[rng.random(x.shape) < 0.3] = np.nan
    # chunks of 16 x 50 events: several, the last one partial
    np.testing.assert_allclose(trees.logit(x, chunk=50, device="cpu"), trees.logit(x),
                               rtol=0, atol=1e-12)
    assert trees.logit(x[:0], device="cpu").shape == (0,)
