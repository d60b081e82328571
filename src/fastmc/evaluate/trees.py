"""A fitted gradient-boosted tree classifier as plain arrays: stored without pickling, evaluated
with ONNX Runtime's tree-ensemble kernel where it is installed, else with numpy.

:class:`TreeEnsemble` holds the trees of a binary scikit-learn
``HistGradientBoostingClassifier`` (numerical features, missing values allowed) in a flat
layout: every tree's nodes renumbered breadth first so that the two children of a node are
consecutive (``right = left + 1``), and every leaf pointing to itself with a threshold of
+inf (so a walk that has reached a leaf stays there); the trees ordered deepest first.  One
walk step for ``N`` events and the ``T_s`` trees deeper than the step ``s`` (a prefix) is then
a handful of vectorised gathers; ``depth`` steps reach every leaf.
The logit is ``baseline + sum of the leaf values``, exactly scikit-learn's raw prediction
(tested against ``predict_proba``).

On the CPU the same trees are also walked by ONNX Runtime (the ``export`` extra): the arrays
become one ``ai.onnx.ml`` ``TreeEnsemble`` node (opset 5: float64 thresholds and leaves, NaN
routed as ``missing_left``), 3-4x faster than the numpy walk on one thread (docs/benchmarks.md,
"The refiner's trees in ONNX Runtime"), the same logits to rounding.  ``engine="auto"`` (the
default) takes it when onnx and onnxruntime import, numpy otherwise.

Used by the classifier refinement of a generator (:mod:`fastmc.workflows.refine`); the arrays
go into a safetensors file through :mod:`fastmc.models.modeldir` (no code is ever unpickled).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import threading
from typing import Any

import numpy as np

__all__ = ["ENGINES", "TreeEnsemble", "resolve_engine"]

_FIELDS = ("feature", "threshold", "missing_left", "child", "value")

#: The CPU walkers of :meth:`TreeEnsemble.logit`: "auto" is "onnxruntime" when it imports.
ENGINES = ("auto", "numpy", "onnxruntime")

_SESSION_LOCK = threading.Lock()


def resolve_engine(engine: str) -> str:
    """The walker ``engine`` (one of :data:`ENGINES`) stands for here: "numpy" or
    "onnxruntime".  ValueError for another name; MissingExtraError for "onnxruntime" without
    the ``export`` extra."""
    if engine not in ENGINES:
        raise ValueError(f"tree engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    have = _have_onnxruntime()
    if engine == "onnxruntime" and not have:
        from fastmc.errors import require

        require("onnx", "export")
        require("onnxruntime", "export")
    return "onnxruntime" if engine == "onnxruntime" or (engine == "auto" and have) else "numpy"


@functools.cache
def _have_onnxruntime() -> bool:
    """Whether onnx and onnxruntime are installed (looked up once: every batch asks)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


@dataclasses.dataclass(frozen=True, eq=False)
class TreeEnsemble:
    """Binary tree-ensemble classifier over ``n_features`` numerical features.

    ``feature`` int32 [M] (feature index of each node; 0 at a leaf), ``threshold`` float64 [M]
    (go to the left child when ``x <= threshold``; +inf at a leaf), ``missing_left`` bool [M]
    (where NaN goes), ``child`` int32 [M] (global index of the left child; the right child is
    ``child + 1``; a leaf's own index), ``value`` float64 [M] (leaf value; 0 at inner nodes),
    ``roots`` int32 [T] (global index of each tree's root), ``depths`` int32 [T] (each tree's
    deepest leaf, non-increasing), ``baseline`` (the initial logit), ``depth`` (the deepest
    leaf's depth: walk steps needed).
    """

    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    child: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    depths: np.ndarray
    baseline: float
    depth: int
    n_features: int
    #: torch copies of the arrays, by device (filled by :meth:`logit` with a ``device``)
    _on_device: dict[str, dict[str, Any]] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        m = len(self.feature)
        for name in _FIELDS:
            if getattr(self, name).shape != (m,):
                raise ValueError(f"TreeEnsemble.{name} must have shape ({m},), got "
                                 f"{getattr(self, name).shape}")
        if m and (self.child.min() < 0 or self.child.max() >= m):
            raise ValueError("TreeEnsemble.child points outside the node arrays")
        if len(self.roots) and (self.roots.min() < 0 or self.roots.max() >= m):
            raise ValueError("TreeEnsemble.roots points outside the node arrays")
        if self.depths.shape != self.roots.shape or (np.diff(self.depths) > 0).any():
            raise ValueError("TreeEnsemble.depths must hold one non-increasing depth per tree")
        if len(self.depths) and self.depths[0] > self.depth:
            raise ValueError("TreeEnsemble.depth is below a tree's depth")
        if m and (self.feature.min() < 0 or self.feature.max() >= self.n_features):
            raise ValueError(f"TreeEnsemble.feature outside 0..{self.n_features - 1}")

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    @classmethod
    def from_sklearn(cls, clf: Any, *, n_trees: int | None = None) -> TreeEnsemble:
        """The trees of a fitted binary ``HistGradientBoostingClassifier`` without categorical
        features (ValueError otherwise); ``n_trees``: only the first ones (the classifier as it
        was after that many boosting iterations, e.g. the best on its validation split)."""
        predictors = getattr(clf, "_predictors", None)
        if predictors is None:
            raise ValueError("TreeEnsemble.from_sklearn needs a fitted HistGradientBoostingClassifier")
        if getattr(clf, "n_trees_per_iteration_", 1) != 1:
            raise ValueError("TreeEnsemble.from_sklearn: only binary classifiers (one tree per iteration)")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in _FIELDS}
        roots, depths, offset = [], [], 0
        trees = [pred for (pred,) in predictors][:n_trees]
        for pred in sorted(trees, key=lambda t: -int(t.nodes["depth"].max())):
            nodes = pred.nodes
            if nodes["is_categorical"].any():
                raise ValueError("TreeEnsemble.from_sklearn: categorical splits are not supported")
            order = _breadth_first(nodes)
            new = np.empty(len(nodes), np.int64)
            new[order] = np.arange(len(nodes))
            n = nodes[order]
            leaf = n["is_leaf"].astype(bool)
            own = np.arange(len(n)) + offset
            parts["feature"].append(np.where(leaf, 0, n["feature_idx"]).astype(np.int32))
            parts["threshold"].append(np.where(leaf, np.inf, n["num_threshold"]).astype(np.float64))
            parts["missing_left"].append(np.where(leaf, True, n["missing_go_to_left"].astype(bool)))
            parts["child"].append(np.where(leaf, own, new[n["left"]] + offset).astype(np.int32))
            parts["value"].append(np.where(leaf, n["value"], 0.0).astype(np.float64))
            roots.append(offset)
            depths.append(int(n["depth"].max()))
            offset += len(n)
        baseline = float(np.asarray(clf._baseline_prediction).ravel()[0])
        empty = {"feature": np.int32, "threshold": np.float64, "missing_left": bool,
                 "child": np.int32, "value": np.float64}
        return cls(**{k: np.concatenate(v) if v else np.zeros(0, empty[k]) for k, v in parts.items()},
                   roots=np.asarray(roots, np.int32), depths=np.asarray(depths, np.int32),
                   baseline=baseline, depth=max(depths, default=0),
                   n_features=int(clf.n_features_in_))

    def logit(self, x: np.ndarray, *, chunk: int = 4096, device: Any = None,
              engine: str = "auto") -> np.ndarray:
        """The classifier's logit (log odds of class 1) for ``x`` float [N, n_features] (NaN =
        missing), float64 [N]; ``sigmoid(logit)`` is scikit-learn's ``predict_proba[:, 1]``.
        ``device`` (a torch device or its name): walk the trees with torch there, in chunks of
        16 x ``chunk`` events (a GPU: much faster than numpy; the same logits to rounding);
        None: on the CPU with ``engine`` (:data:`ENGINES`; ONNX Runtime runs on the calling
        thread only, so that callers can split a batch between threads)."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"TreeEnsemble.logit: x must have shape (N, {self.n_features}), "
                             f"got {x.shape}")
        if device is not None:
            return self._logit_torch(x, device, 16 * chunk)
        if self.n_trees and len(x) and resolve_engine(engine) == "onnxruntime":
            return self._session().run(None, {"x": np.ascontiguousarray(x)})[0][:, 0]
        out = np.empty(len(x))
        for i in range(0, len(x), chunk):
            out[i : i + chunk] = self._logit(x[i : i + chunk])
        return out

    def _logit_torch(self, x: np.ndarray, device: Any, chunk: int) -> np.ndarray:
        import torch

        dev = torch.device(device)
        key = str(dev)
        if key not in self._on_device:  # the arrays copied to a device once
            self._on_device[key] = {
                k: torch.as_tensor(np.asarray(getattr(self, k)), device=dev)
                for k in ("feature", "threshold", "missing_left", "child", "value", "roots")}
        t = self._on_device[key]
        out = []
        for i in range(0, len(x), chunk):
            xs = torch.as_tensor(x[i : i + chunk], device=dev)
            n = len(xs)
            flat = xs.reshape(-1)
            base = (torch.arange(n, device=dev) * self.n_features)[:, None]
            node = t["roots"].long().expand(n, -1).clone()
            for k in self._widths():
                at = node[:, :k]
                v = flat[base + t["feature"][at]]
                left = torch.where(torch.isnan(v), t["missing_left"][at], v <= t["threshold"][at])
                node[:, :k] = t["child"][at].long() + (~left).long()
            out.append((self.baseline + t["value"][node].sum(dim=1)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def _session(self) -> Any:
        """The ONNX Runtime session of :meth:`to_onnx` (one intra-op thread), made once."""
        with _SESSION_LOCK:
            if "onnxruntime" not in self._on_device:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                self._on_device["onnxruntime"] = {"session": ort.InferenceSession(
                    self.to_onnx().SerializeToString(), options, providers=["CPUExecutionProvider"])}
            return self._on_device["onnxruntime"]["session"]

    def to_onnx(self) -> Any:
        """The trees as an ONNX model (``onnx.ModelProto``; needs the ``export`` extra): input
        ``x`` float64 [N, n_features] (NaN = missing), output ``logit`` float64 [N, 1]: one
        ``ai.onnx.ml`` (opset 5) ``TreeEnsemble`` node summing the leaves, plus the baseline.
        ValueError for an ensemble without trees (its logit is the baseline)."""
        from fastmc.errors import require

        onnx = require("onnx", "export")
        from onnx import TensorProto, helper, numpy_helper

        if not self.n_trees:
            raise ValueError("TreeEnsemble.to_onnx: the ensemble has no trees")
        # opset 5 numbers the inner nodes and the leaves separately; a child is (id, is-leaf).
        # A leaf points to itself (an inner node may have a threshold of +inf: NaN or not)
        leaf = self.child == np.arange(len(self.child))
        inner, leaves = np.flatnonzero(~leaf), np.flatnonzero(leaf)
        number = np.empty(len(leaf), np.int64)
        number[inner], number[leaves] = np.arange(len(inner)), np.arange(len(leaves))
        roots = self.roots.astype(np.int64)
        # a tree that is one leaf gets a root that sends every event to it either way
        alone = roots[leaf[roots]]
        left = np.concatenate([self.child[inner].astype(np.int64), alone])
        right = np.concatenate([self.child[inner].astype(np.int64) + 1, alone])
        tree_roots = number[roots]
        tree_roots[leaf[roots]] = len(inner) + np.arange(len(alone))
        node = helper.make_node(
            "TreeEnsemble", ["x"], ["sum"], domain="ai.onnx.ml",
            aggregate_function=1, n_targets=1, post_transform=0,  # SUM, no transform
            tree_roots=tree_roots.tolist(),
            nodes_featureids=np.concatenate([self.feature[inner], np.zeros(len(alone))]
                                            ).astype(np.int64).tolist(),
            nodes_splits=numpy_helper.from_array(np.concatenate(
                [self.threshold[inner], np.zeros(len(alone))]).astype(np.float64)),
            nodes_modes=numpy_helper.from_array(np.zeros(len(left), np.uint8)),  # BRANCH_LEQ
            nodes_truenodeids=number[left].tolist(), nodes_trueleafs=leaf[left].astype(np.int64).tolist(),
            nodes_falsenodeids=number[right].tolist(),
            nodes_falseleafs=leaf[right].astype(np.int64).tolist(),
            nodes_missing_value_tracks_true=np.concatenate(
                [self.missing_left[inner], np.ones(len(alone), bool)]).astype(np.int64).tolist(),
            leaf_targetids=[0] * len(leaves),
            leaf_weights=numpy_helper.from_array(self.value[leaves].astype(np.float64)))
        baseline = helper.make_node("Add", ["sum", "baseline"], ["logit"])
        graph = helper.make_graph(
            [node, baseline], "fastmc_trees",
            [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, self.n_features])],
            [helper.make_tensor_value_info("logit", TensorProto.DOUBLE, [None, 1])],
            initializer=[numpy_helper.from_array(np.array([self.baseline], np.float64), "baseline")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                        helper.make_opsetid("ai.onnx.ml", 5)])
        model.ir_version = min(model.ir_version, 10)  # readable by every ONNX Runtime >= 1.21
        onnx.checker.check_model(model, full_check=True)
        return model

    def _widths(self) -> list[int]:
        """How many trees (a prefix: they are ordered deepest first) still walk at each of the
        ``depth`` steps."""
        return [int(np.count_nonzero(self.depths > step)) for step in range(self.depth)]

    def _logit(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        flat = x.ravel()
        base = (np.arange(n, dtype=np.int64) * self.n_features)[:, None]
        node = np.broadcast_to(self.roots, (n, self.n_trees)).astype(np.int64)
        for k in self._widths():
            at = node[:, :k]
            v = flat[base + self.feature[at]]
            right = ~np.where(np.isnan(v), self.missing_left[at], v <= self.threshold[at])
            node[:, :k] = self.child[at] + right
        return self.baseline + self.value[node].sum(axis=1)

    @classmethod
    def concatenate(cls, parts: list[TreeEnsemble]) -> TreeEnsemble:
        """One ensemble whose logit is the sum of the ``parts``' logits (their baselines added,
        their trees pooled and re-ordered deepest first): the stages of an iterated
        reweighting evaluated in one walk.  ValueError for no part or unequal feature counts."""
        if not parts or len({p.n_features for p in parts}) != 1:
            raise ValueError("TreeEnsemble.concatenate needs >= 1 ensemble, all over the same features")
        offsets = np.cumsum([0] + [len(p.feature) for p in parts[:-1]])
        roots = np.concatenate([p.roots.astype(np.int64) + o for p, o in zip(parts, offsets, strict=True)])
        depths = np.concatenate([p.depths for p in parts])
        order = np.argsort(-depths, kind="stable")
        return cls(
            feature=np.concatenate([p.feature for p in parts]),
            threshold=np.concatenate([p.threshold for p in parts]),
            missing_left=np.concatenate([p.missing_left for p in parts]),
            child=np.concatenate([p.child.astype(np.int64) + o for p, o in zip(parts, offsets, strict=True)]
                                 ).astype(np.int32),
            value=np.concatenate([p.value for p in parts]),
            roots=roots[order].astype(np.int32), depths=depths[order].astype(np.int32),
            baseline=float(sum(p.baseline for p in parts)),
            depth=max(p.depth for p in parts), n_features=parts[0].n_features,
        )

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays for a safetensors file, JSON-able scalars): :meth:`from_arrays` rebuilds it."""
        arrays = {k: np.ascontiguousarray(getattr(self, k)) for k in _FIELDS}
        arrays["missing_left"] = arrays["missing_left"].astype(np.uint8)
        arrays["roots"] = np.ascontiguousarray(self.roots)
        arrays["depths"] = np.ascontiguousarray(self.depths)
        return arrays, {"baseline": self.baseline, "depth": self.depth, "n_features": self.n_features}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> TreeEnsemble:
        return cls(
            feature=np.asarray(arrays["feature"], np.int32),
            threshold=np.asarray(arrays["threshold"], np.float64),
            missing_left=np.asarray(arrays["missing_left"]).astype(bool),
            child=np.asarray(arrays["child"], np.int32),
            value=np.asarray(arrays["value"], np.float64),
            roots=np.asarray(arrays["roots"], np.int32),
            depths=np.asarray(arrays["depths"], np.int32),
            baseline=float(scalars["baseline"]), depth=int(scalars["depth"]),
            n_features=int(scalars["n_features"]),
        )


def _breadth_first(nodes: np.ndarray) -> np.ndarray:
    """Node indices of one scikit-learn tree in breadth-first order, the two children of every
    inner node consecutive (left, then right)."""
    order = [0]
    i = 0
    while i < len(order):
        k = order[i]
        if not nodes["is_leaf"][k]:
            order += [int(nodes["left"][k]), int(nodes["right"][k])]
        i += 1
    if len(order) != len(nodes):
        raise ValueError("TreeEnsemble.from_sklearn: a tree has unreachable nodes")
    return np.asarray(order)
