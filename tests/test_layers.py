"""The layers of README's "Development" section hold: import-linter's contracts
(``.importlinter``), no private names across layers, no private internals of libraries."""

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
    """``engine.mdp.env`` -> ``engine.mdp``; ``engine.files`` -> ``engine``; ``bridge.server`` -> ``bridge``."""
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


#: The one place qriff reaches into a library's private module, with the reason and its test.
PRIVATE_LIBRARY_USE = {("engine/audio/instruments.py", "pedalboard._pedalboard")}
#: Private attributes of library objects that have public equivalents.
PRIVATE_ATTRIBUTES = ("_sess", "_iobinding")


def test_libraries_are_used_through_their_public_apis():
    found = []
    for path in _sources():
        rel = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text(), rel)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                top, *rest = name.split(".")
                if top not in PACKAGES and any(p.startswith("_") and not p.startswith("__") for p in rest) \
                        and (rel, name) not in PRIVATE_LIBRARY_USE:
                    found.append(f"{rel}:{node.lineno} imports {name}")
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
                found.append(f"{rel}:{node.lineno} uses .{node.attr}")
    assert not found, "\n".join(found)
