"""The layers of the "Development" docs hold: import-linter's contracts (``.importlinter``),
no import cycles, no private names across layers, no private internals of libraries."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PACKAGES = ("engine", "bridge", "recommender")


def _sources():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    """``engine.mdp.env`` -> ``engine.mdp``; ``engine.base.files`` -> ``engine``; ``bridge.server`` -> ``bridge``."""
    parts = module.split(".")
    if parts[0] == "engine" and len(parts) > 1 and (ROOT / "engine" / parts[1] / "__init__.py").is_file():
        return f"engine.{parts[1]}"
    return parts[0]


def test_import_contracts_hold():
    pytest.importorskip("importlinter")
    # A subprocess: import-linter builds its graph from the files, and its cache stays out of the tree.
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='.importlinter', no_cache=True))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "BROKEN" not in r.stdout and "kept, 0 broken" in r.stdout


def _import_cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if i < len(targets):
                work.append((node, i + 1))
                nxt = targets[i]
                if nxt not in edges:
                    continue
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return cycles


def test_cycle_finder_finds_a_cycle():
    """Negative control: the finder reports a two-module and a three-module cycle, and nothing acyclic."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.a"), ("p.c", "p.d"), ("p.d", "p.e"), ("p.e", "p.c"), ("p.e", "p.f")):
        graph.add_import(importer=a, imported=b)
    assert sorted(_import_cycles(graph)) == [["p.a", "p.b"], ["p.c", "p.d", "p.e"]]


def test_no_import_cycles():
    """No module of qriff imports itself through others: function-level and ``TYPE_CHECKING`` imports count."""
    grimp = pytest.importorskip("grimp")  # import-linter's graph builder
    graph = grimp.build_graph(*PACKAGES, cache_dir=None, exclude_type_checking_imports=False)
    cycles = _import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_private_names_across_layers():
    """Another layer's ``_name`` is an implementation detail: import or call its public API."""
    found = []
    for path in _sources():
        here = _layer(_module_name(path))
        tree = ast.parse(path.read_text(), str(path))
        foreign: set[str] = set()  # local names bound to another layer's modules or objects
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                for alias in node.names:
                    source = _layer(f"{node.module}.{alias.name}") if alias.name[0].islower() else _layer(node.module)
                    if source == here:
                        continue
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{alias.name}")
                    foreign.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in foreign \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not found, "\n".join(found)


#: The places qriff reaches into a library's private names, each with its reason and a test that fails
#: loudly when the library changes (tests/engine/audio/test_pedalboard_workaround.py, test_fluidsynth_write.py):
#: pedalboard's AudioStream is only in its private module; pyfluidsynth's public API renders int16 only.
PRIVATE_LIBRARY_USE = {("engine/audio/instruments.py", "pedalboard._pedalboard"),
                       ("engine/audio/instruments.py", "fluidsynth._fl")}
#: Private attributes of library objects that have public equivalents.
PRIVATE_ATTRIBUTES = ("_sess", "_iobinding")


def _is_private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _third_party(module: str) -> bool:
    top = module.split(".")[0]
    return top not in PACKAGES and top not in sys.stdlib_module_names


def _library_names(tree: ast.AST) -> dict[str, str]:
    """Local names bound by imports of third-party modules -> the dotted name they stand for."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _third_party(a.name):
                    local = a.asname or a.name.split(".")[0]
                    bound[local] = a.name if a.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _third_party(node.module):
            for a in node.names:
                bound[a.asname or a.name] = f"{node.module}.{a.name}"
    return bound


def _dotted(node: ast.Attribute) -> tuple[str, list[str]] | None:
    parts = []
    value: ast.expr = node
    while isinstance(value, ast.Attribute):
        parts.append(value.attr)
        value = value.value
    return (value.id, parts[::-1]) if isinstance(value, ast.Name) else None


def test_libraries_are_used_through_their_public_apis():
    """No import of a library's private module, and no ``module._name`` on a third-party module
    (the standard library's private types in annotations, ``argparse._SubParsersAction``, are left alone)."""
    found = []
    for path in _sources():
        rel = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text(), rel)
        libraries = _library_names(tree)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                top, *rest = name.split(".")
                if top not in PACKAGES and any(_is_private(p) for p in rest) \
                        and (rel, name) not in PRIVATE_LIBRARY_USE:
                    found.append(f"{rel}:{node.lineno} imports {name}")
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                chain = _dotted(node)
                if chain and chain[0] in libraries:
                    name = ".".join([libraries[chain[0]], *chain[1]])
                    if (rel, name) not in PRIVATE_LIBRARY_USE:
                        found.append(f"{rel}:{node.lineno} uses {name}")
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
                found.append(f"{rel}:{node.lineno} uses .{node.attr}")
    assert not found, "\n".join(found)


def test_the_private_name_check_finds_a_private_name(tmp_path):
    """Negative control: ``module._name`` on an imported library is found, on a qriff module it is not."""
    tree = ast.parse("import numpy as np\nfrom scipy import signal\nimport engine\nimport argparse\n"
                     "np._core\nsignal._sigtools.x\nengine._PUBLIC\nnp.public\nargparse._SubParsersAction\n")
    libraries = _library_names(tree)
    used = [".".join([libraries[c[0]], *c[1]]) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and _is_private(n.attr) and (c := _dotted(n)) and c[0] in libraries]
    assert sorted(used) == ["numpy._core", "scipy.signal._sigtools"]
