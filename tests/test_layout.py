"""The package layout's rules (issue #10): the tree shows the pipeline and there are no import
cycles between bienc's modules (function-level imports included)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bienc_cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path) -> list[tuple[str, list[str]]]:
    """Every import in the file, at any depth: (module, names imported from it)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the bienc modules it imports (a `from pkg import mod` counts as importing mod)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for module, names in imported_names(path):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            if not targets and module in modules:
                targets = [module]
            edges.update(t for t in targets if t != name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_bienc_modules():
    assert cycles(import_graph(all_modules())) == []


def test_package_inits_are_empty():
    # An __init__ that imports its modules makes every cold `bienc query` pay for them.
    full = [
        name
        for name, path in all_modules().items()
        if path.name == "__init__.py"
        and name != "bienc_cli"
        and path.read_text(encoding="utf-8").strip()
    ]
    assert full == []


def test_the_tree_shows_the_pipeline():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    for role in (
        "cli",
        "ui",
        "inputs",
        "encoding",
        "store",
        "indexing",
        "query",
        "dedup",
        "actions",
        "cluster",
        "evaluation",
        "util",
    ):
        assert role in subpackages
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "errors.py"]


def importers(module: str) -> set[str]:
    """The bienc modules that import ``module`` or one of its submodules, at any depth."""
    return {
        name
        for name, path in all_modules().items()
        if any(m == module or m.startswith(module + ".") for m, _ in imported_names(path))
    }


def test_only_the_store_graph_imports_hnswlib():
    assert importers("hnswlib") == {"bienc_cli.store.graph"}


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_only_store_and_inputs_import_pyarrow():
    # The sidecar's format is store's; inputs reads and writes the user's Parquet files.
    allowed = ("bienc_cli.store", "bienc_cli.inputs")
    assert sorted(m for m in importers("pyarrow") if not _within(m, allowed)) == []


# hnswlib.Index methods: only store/ may call them (graph.py; generations saves the graph);
# everyone else goes through store.graph's functions.
HNSWLIB_CALL = re.compile(
    r"\.(mark_deleted|add_items|knn_query|get_items|set_ef|resize_index|save_index"
    r"|load_index|init_index|get_ids_list|get_max_elements)\("
)


def test_hnswlib_call_pattern_finds_calls():
    assert HNSWLIB_CALL.search("index.set_ef(k)") and HNSWLIB_CALL.search("g.add_items(v, ids)")
    assert not HNSWLIB_CALL.search("graph.patched(index, dead, v, ids, ef=ef)")


def test_only_the_store_calls_hnswlib_index_methods():
    allowed = ("bienc_cli.store",)
    calls = [
        f"{name}: {match.group(0)}"
        for name, path in all_modules().items()
        if not _within(name, allowed)
        for match in HNSWLIB_CALL.finditer(path.read_text(encoding="utf-8"))
    ]
    assert calls == []


MAX_LINES = 600


def test_no_module_over_the_line_limit():
    # Split by responsibility when one grows past this, not by line count alone.
    long = {
        name: n
        for name, path in all_modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


# Each heavy dependency -> the one subpackage that may import it (at any depth).
OWNERS = {
    "torch": "bienc_cli.encoding",
    "sentence_transformers": "bienc_cli.encoding",
    "transformers": "bienc_cli.encoding",
    "onnxruntime": "bienc_cli.encoding",
    "onnx": "bienc_cli.encoding",
    "onnxscript": "bienc_cli.encoding",
    "pypdf": "bienc_cli.inputs",
    "matplotlib": "bienc_cli.cluster",
    "sklearn": "bienc_cli.cluster",
}


@pytest.mark.parametrize("dependency", sorted(OWNERS))
def test_each_heavy_dependency_has_one_owner(dependency):
    strangers = sorted(m for m in importers(dependency) if not _within(m, (OWNERS[dependency],)))
    assert strangers == []
