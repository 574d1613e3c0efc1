"""bench/run_all.py runs every benchmark, and its quick mode passes flags each benchmark accepts."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))
import run_all  # noqa: E402


def _flags(script: str) -> set[str]:
    """The option strings a benchmark's argparse parser declares."""
    tree = ast.parse((BENCH / f"bench_{script}.py").read_text())
    return {arg.value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
            for arg in node.args if isinstance(arg, ast.Constant) and str(arg.value).startswith("--")}


def test_every_benchmark_is_run():
    on_disk = sorted(p.stem.removeprefix("bench_") for p in BENCH.glob("bench_*.py"))
    assert list(run_all.SCRIPTS) == on_disk
    assert {"ray", "recsim"} <= set(run_all.SCRIPTS)


def test_every_benchmark_has_a_quick_run_with_flags_it_accepts():
    assert set(run_all.QUICK) == set(run_all.SCRIPTS)
    for name, flags in run_all.QUICK.items():
        declared = _flags(name)
        assert declared, f"bench_{name}.py declares no flags: the check below would show nothing"
        unknown = [f for f in flags if f.startswith("--") and f not in declared]
        assert not unknown, f"bench_{name}.py does not accept {unknown}"


def test_an_unknown_benchmark_is_an_error():
    r = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "nosuch"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "unknown benchmark 'nosuch'" in r.stderr and "ray" in r.stderr and "recsim" in r.stderr
