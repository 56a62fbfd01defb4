"""The layers point one way, read off every module's imports with ``ast`` (nothing is imported to check).

    schemas    imports nothing of ours outside schemas (the contracts: records, the shard-set layout)
    domain     (the sgverbalise/ folder) imports the domain and schemas; never apache_beam, torch, transformers
    pipelines  (Beam) imports no training, no cli, no torch
    training   (torch) imports no pipelines, no cli, no apache_beam
    cli        is imported by cli only

Module-level and function-level imports both count, for the layer rules and for import cycles between modules (a
function-level import only defers a cycle); ``if TYPE_CHECKING:`` blocks are left out of cycles. And the shard-set
layout's file names are spelled in code (string literals, docstrings aside) in schemas/ only.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder -> (import name, layer)
FOLDERS = {
    "schemas": ("sgverbalise.schemas", "schemas"),
    "sgverbalise": ("sgverbalise", "domain"),
    "pipelines": ("sgverbalise.pipelines", "pipelines"),
    "training": ("sgverbalise.training", "training"),
    "cli": ("sgverbalise.cli", "cli"),
}
FORBIDDEN_THIRD_PARTY = {
    "schemas": {"apache_beam", "torch", "transformers"},
    "domain": {"apache_beam", "torch", "transformers"},
    "pipelines": {"torch", "transformers"},
    "training": {"apache_beam"},
    "cli": set(),
}
ALLOWED_LAYERS = {
    "schemas": {"schemas"},
    "domain": {"domain", "schemas"},
    "pipelines": {"pipelines", "domain", "schemas"},
    "training": {"training", "domain", "schemas"},
    "cli": {"cli", "pipelines", "training", "domain", "schemas"},
}
LAYOUT_FILE_RE = re.compile(r"(^|/)(manifest|relations|ingest)\.json$")
# VALSE's probe file is named relations.json: a benchmark's file, not the shard-set layout's.
LAYOUT_LITERAL_EXCEPTIONS = {("sgverbalise.training.experiment.probes", "valse/relations.json"),
                             ("sgverbalise.training.experiment.probes", "relations.json")}


@dataclass
class Module:
    name: str
    layer: str
    path: Path
    is_package: bool
    tree: ast.Module
    imports: list[tuple[str, int, bool]] = field(default_factory=list)  # (imported name, line, runs at run time)


def _modules() -> dict[str, Module]:
    found = {}
    for folder, (root, layer) in FOLDERS.items():
        base = REPO / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join([root, *parts])
            found[name] = Module(name, layer, path, is_package, ast.parse(path.read_text(encoding="utf-8")))
    for module in found.values():
        module.imports = _imports(module, found)
    return found


def _is_type_checking(node: ast.AST) -> bool:
    """Whether ``node`` is ``if TYPE_CHECKING:`` (its imports never run)."""
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, runs: bool):
    """(import node, whether it runs) for every import under ``node``, module-level or in functions."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, runs
        yield from _walk(child, runs and not _is_type_checking(child))


def _imports(module: Module, known: dict[str, Module]) -> list[tuple[str, int, bool]]:
    """Each imported name, resolved: relative imports against the module's package; ``from pkg import mod``
    to the module ``pkg.mod`` when there is one."""
    out = []
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node, runs in _walk(module.tree, True):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno, runs) for alias in node.names]
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
            target = f"{base}.{alias.name}"
            out.append((target if target in known else base, node.lineno, runs))
    return out


def _ours(name: str, known: dict[str, Module]) -> Module | None:
    """The module of ours ``name`` imports (the longest known prefix), or None for third-party/stdlib."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in known:
            return known[".".join(parts[:n])]
    return None


MODULES = _modules()


def test_the_modules_are_found():
    layers = {m.layer for m in MODULES.values()}
    assert layers == set(FOLDERS[f][1] for f in FOLDERS)
    assert "sgverbalise.schemas.layout" in MODULES and "sgverbalise.pipelines.options" in MODULES


def _where(module: Module, line: int) -> str:
    return f"{module.path.relative_to(REPO)}:{line}"


def test_layers_import_one_way():
    problems = []
    for module in MODULES.values():
        for name, line, _ in module.imports:
            target = _ours(name, MODULES)
            if target is None:
                if name.split(".")[0] in FORBIDDEN_THIRD_PARTY[module.layer]:
                    problems.append(f"{_where(module, line)}: {module.layer} imports {name}")
            elif target.layer not in ALLOWED_LAYERS[module.layer]:
                problems.append(f"{_where(module, line)}: {module.layer} imports {target.layer} ({name})")
    assert not problems, "\n".join(problems)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def _module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for module in MODULES.values():
        for name, _, runs in module.imports:
            target = _ours(name, MODULES)
            if runs and target is not None and target.name != module.name:
                graph[module.name].add(target.name)
    return graph


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert _cycles(_module_graph()) == [], "import cycles (modules of each listed)"


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes of the module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def test_layout_file_names_are_spelled_in_schemas_only():
    problems = []
    for module in MODULES.values():
        if module.layer == "schemas":
            continue
        docstrings = _docstrings(module.tree)
        for node in ast.walk(module.tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and LAYOUT_FILE_RE.search(node.value)
                    and (module.name, node.value) not in LAYOUT_LITERAL_EXCEPTIONS):
                problems.append(f"{_where(module, node.lineno)}: {node.value!r} (import it from schemas.layout)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["MANIFEST", "RELATIONS", "INGEST_MANIFEST"])
def test_the_layout_names_its_files(name):
    from sgverbalise.schemas import layout

    assert LAYOUT_FILE_RE.search(getattr(layout, name))
