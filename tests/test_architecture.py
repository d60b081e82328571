"""The layering of src/fastmc: no import cycles, nothing imports the training loop's helpers.

The import graph is built with ``ast`` from module-level imports (statements at the top of a
module, including those inside module-level ``if``/``try`` blocks, but not imports inside
functions, which run on first use).  ``from package import name`` counts as an import of
``package.name`` when that is a module, else of ``package``.  Nothing is excluded.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "fastmc"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    out: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        elif isinstance(node, ast.If | ast.Try):
            todo += node.body + node.orelse
            if isinstance(node, ast.Try):
                todo += node.finalbody + [s for h in node.handlers for s in h.body]
    return out


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_pkg = MODULES[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(*, everywhere: bool = False) -> dict[str, set[str]]:
    """Module -> the fastmc modules it imports at module level (``everywhere``: also inside
    functions)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps: set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        nodes = ([n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
                 if everywhere else _top_level_imports(tree))
        for node in nodes:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                target = _resolve(name, node)
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target
                           for a in node.names]
            deps |= {t for t in targets if t in MODULES and t != name}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_the_packages() -> None:
    graph = import_graph()
    assert "fastmc.models.base" in graph["fastmc.models.modeldir"]
    assert "fastmc.workflows.train" in graph["fastmc.workflows.train_store"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_src() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_arrows_point_down() -> None:
    """Lower layers never import the workflows or the CLI, not even inside a function."""
    layer = {"cli": 3, "__main__": 3, "workflows": 2}  # __main__: `python -m fastmc`
    for name, deps in import_graph(everywhere=True).items():
        mine = layer.get(name.split(".")[1] if name.count(".") else "", 0)
        for dep in deps:
            theirs = layer.get(dep.split(".")[1] if dep.count(".") else "", 0)
            assert theirs <= mine, f"{name} imports {dep} from a higher layer"


def test_nothing_imports_the_training_loop() -> None:
    """Only the store plumbing drives the loop; helpers live in data/, devices, modeldir."""
    users = {name for name, deps in import_graph(everywhere=True).items()
             if "fastmc.workflows.train" in deps}
    assert users == {"fastmc.workflows.train_store"}


def test_only_modeldir_touches_model_files() -> None:
    """The model directory's file names appear in fastmc.models.modeldir only."""
    names = ("weights.safetensors", "prior.safetensors", "checkpoint.safetensors",
             "checkpoint.json", "history.json")
    owners = {name for name, path in MODULES.items()
              if any(f'"{n}"' in path.read_text() for n in names)}
    assert owners == {"fastmc.models.modeldir"}


def test_workflow_functions_stay_short() -> None:
    """Orchestration reads top to bottom: no function of fastmc.workflows over 80 lines."""
    long = []
    for name, path in MODULES.items():
        if name.startswith("fastmc.workflows"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 80:
                    long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long == []
