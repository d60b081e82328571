"""The tree-ensemble arrays of the refinement (fastmc.evaluate.trees): known answers and
scikit-learn's own predictions, walked by numpy and by ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

from fastmc.evaluate.trees import ENGINES, TreeEnsemble, resolve_engine

pytest.importorskip("sklearn")

#: the CPU walkers, ONNX Runtime only where the export extra is installed
WALKERS = ["numpy", pytest.param("onnxruntime", marks=pytest.mark.skipif(
    resolve_engine("auto") != "onnxruntime", reason="needs the export extra (onnx, onnxruntime)"))]


def _stump() -> TreeEnsemble:
    """One tree: x0 <= 0.5 (NaN to the right) -> leaf -1, else -> leaf +2; baseline 0.25."""
    return TreeEnsemble(
        feature=np.array([0, 0, 0], np.int32), threshold=np.array([0.5, np.inf, np.inf]),
        missing_left=np.array([False, True, True]), child=np.array([1, 1, 2], np.int32),
        value=np.array([0.0, -1.0, 2.0]), roots=np.array([0], np.int32),
        depths=np.array([1], np.int32), baseline=0.25,
        depth=1, n_features=2,
    )


@pytest.mark.parametrize("engine", WALKERS)
def test_a_hand_built_stump_gives_its_known_logits(engine: str) -> None:
    x = np.array([[0.0, 9.0], [0.5, 9.0], [0.51, 9.0], [np.nan, 9.0], [-np.inf, np.nan]])
    np.testing.assert_array_equal(_stump().logit(x, engine=engine), [-0.75, -0.75, 2.25, 2.25, -0.75])


@pytest.mark.parametrize("engine", WALKERS)
def test_a_tree_that_is_one_leaf_adds_its_value(engine: str) -> None:
    """A stump (depth 1) and a one-leaf tree (depth 0) pooled: every event gets the leaf's
    value on top of the stump's (ONNX Runtime's format has no one-leaf trees: fastmc gives it
    a root that sends both ways to the leaf)."""
    leaf = TreeEnsemble(feature=np.zeros(1, np.int32), threshold=np.array([np.inf]),
                        missing_left=np.ones(1, bool), child=np.zeros(1, np.int32),
                        value=np.array([0.5]), roots=np.zeros(1, np.int32),
                        depths=np.zeros(1, np.int32), baseline=-0.25, depth=0, n_features=2)
    both = TreeEnsemble.concatenate([leaf, _stump()])
    x = np.array([[0.0, 1.0], [3.0, np.nan], [np.nan, np.nan]])
    np.testing.assert_array_equal(both.logit(x, engine=engine), [-0.5, 2.5, 2.5])
    np.testing.assert_array_equal(leaf.logit(x, engine=engine), [0.25, 0.25, 0.25])


def test_engine_names_are_checked() -> None:
    assert resolve_engine("numpy") == "numpy"
    assert resolve_engine("auto") in ENGINES
    with pytest.raises(ValueError, match="tree engine must be one of auto, numpy, onnxruntime"):
        resolve_engine("xgboost")
    with pytest.raises(ValueError, match="tree engine"):
        _stump().logit(np.zeros((1, 2)), engine="gpu")


def _fitted(seed: int = 0, n: int = 6000, d: int = 7):
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[rng.random(x.shape) < 0.25] = np.nan
    z = np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) + np.isnan(x[:, 3])
    y = (z + rng.normal(size=n) > 0.3).astype(int)
    clf = HistGradientBoostingClassifier(max_iter=60, early_stopping=False, random_state=seed)
    return clf.fit(x, y), rng


@pytest.mark.parametrize("engine", WALKERS)
@pytest.mark.parametrize("seed", [0, 1])
def test_logits_are_scikit_learns_predictions(seed: int, engine: str) -> None:
    clf, rng = _fitted(seed)
    trees = TreeEnsemble.from_sklearn(clf)
    assert trees.n_trees == clf.n_iter_
    x = rng.normal(size=(3000, 7)) * 2
    x[rng.random(x.shape) < 0.3] = np.nan
    x[:5] = np.nan  # all missing
    inner = trees.child != np.arange(len(trees.child))
    assert np.isinf(trees.threshold[inner]).any()  # splits of NaN against every value (x3)
    x[5:10] = trees.threshold[inner][:5, None]  # on a split
    p = clf.predict_proba(x)[:, 1]
    logit = trees.logit(x, chunk=700, engine=engine)  # numpy: chunks that do not divide N
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


@pytest.mark.parametrize("engine", WALKERS)
def test_concatenated_ensembles_sum_their_logits(engine: str) -> None:
    a, rng = _fitted(4)
    b, _ = _fitted(5)
    parts = [TreeEnsemble.from_sklearn(a), TreeEnsemble.from_sklearn(b, n_trees=9),
             TreeEnsemble.from_sklearn(a, n_trees=1)]
    both = TreeEnsemble.concatenate(parts)
    assert both.n_trees == sum(p.n_trees for p in parts)
    assert (np.diff(both.depths) <= 0).all()
    x = rng.normal(size=(800, 7))
    x[rng.random(x.shape) < 0.2] = np.nan
    np.testing.assert_allclose(both.logit(x, engine=engine), sum(p.logit(x, engine="numpy") for p in parts),
                               rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="same features"):
        TreeEnsemble.concatenate([parts[0], _stump()])


def test_torch_walk_gives_numpys_logits() -> None:
    pytest.importorskip("torch")
    clf, rng = _fitted(6)
    trees = TreeEnsemble.from_sklearn(clf)
    x = rng.normal(size=(1500, 7)) * 2
    x[rng.random(x.shape) < 0.3] = np.nan
    # chunks of 16 x 50 events: several, the last one partial
    np.testing.assert_allclose(trees.logit(x, chunk=50, device="cpu"), trees.logit(x, engine="numpy"),
                               rtol=0, atol=1e-12)
    assert trees.logit(x[:0], device="cpu").shape == (0,)


def test_the_onnx_model_says_what_it_holds() -> None:
    onnx = pytest.importorskip("onnx")
    clf, _ = _fitted(7)
    model = TreeEnsemble.from_sklearn(clf).to_onnx()
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["TreeEnsemble", "Add"]
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["logit"]
    with pytest.raises(ValueError, match="no trees"):
        TreeEnsemble.from_sklearn(clf, n_trees=0).to_onnx()
