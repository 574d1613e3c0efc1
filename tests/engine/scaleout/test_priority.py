"""Ray workers run at the caller's priority, not Ray's default +15 (the cause of the old in-worker slowdown)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from engine.base.cluster import NICENESS_VAR, match_priority, process_priority
from tests.conftest import ROOT

MAY_RAISE = os.geteuid() == 0  # raising a priority back needs root (or RLIMIT_NICE), as a Ray worker's would


def test_match_priority_never_lowers_a_process_further():
    assert match_priority(process_priority() + 5) == process_priority()


def test_match_priority_brings_a_reniced_process_back_or_says_how():
    # In a child process: this test process keeps its own priority.
    code = textwrap.dedent("""
        import logging, os
        from engine.base.cluster import match_priority, process_priority
        logging.basicConfig(level=logging.WARNING)
        caller = process_priority()
        os.nice(15 if caller < 19 else 0)
        print(caller, process_priority(), match_priority(caller))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    caller, reniced, after = map(int, r.stdout.split())
    assert reniced == min(19, caller + 15)
    if MAY_RAISE:
        assert after == caller and not r.stderr
    else:
        assert after == reniced and f"{NICENESS_VAR}=0" in r.stderr


def _worker_priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


@pytest.mark.slow  # starts a local Ray
@pytest.mark.parametrize("setting", [None, "15"])
def test_local_ray_workers_run_at_the_callers_priority(monkeypatch, setting):
    ray = pytest.importorskip("ray")
    from engine.base.cluster import connect

    if ray.is_initialized():
        pytest.skip("a Ray is already initialised in this process")
    if setting is None:
        monkeypatch.delenv(NICENESS_VAR, raising=False)
    else:  # negative control: the user's own setting wins, and the test sees the difference
        monkeypatch.setenv(NICENESS_VAR, setting)
    with connect(workers=1) as r:
        worker = r.get(r.remote(num_cpus=1)(_worker_priority).remote())
    caller = process_priority()
    assert worker == (caller if setting is None else min(19, caller + 15))
    assert os.environ.get(NICENESS_VAR) == setting  # connect leaves the caller's environment as it found it
