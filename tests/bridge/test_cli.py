"""``qriff serve`` as a user runs it: the real onnxruntime policy, Pure Data, signals, rendering.

A tiny untrained network is exported to ONNX for these tests (the notes need not be
musical, only exactly the ones the engine makes); the shipped model is used when
the package has one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.mdp import observation, styles
from engine.music.clip import Clip
from engine.runtime import DEFAULT_MODEL_PATH, Policy
from tests.bridge.support import Peer
from tests.bridge.test_peers import pd_lines, run_pd
from tests.conftest import IN_CI, ROOT

pytestmark = pytest.mark.slow  # qriff serve subprocesses with the real model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from engine.learn.export import export_model
    from engine.learn.model import ModelConfig, QNetwork

    torch.set_num_threads(1)
    torch.manual_seed(1)
    terms = styles.BUILTIN_TERMS
    net = QNetwork(ModelConfig(obs_dim=observation.obs_dim(len(terms)), hidden=(32, 32))).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_model(net, path, terms, train_config={"preset": "bridge-test"}, model_id="bridge-tiny")
    return path


class Serve:
    """``qriff serve`` in a subprocess on a free port."""

    def __init__(self, out: Path, *flags: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--out", str(out),
                                      *flags], cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)
        self.stderr: list[str] = []
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        while True:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"qriff serve exited: {''.join(self.stderr)}")
            self.stderr.append(line)
            m = re.search(r"listening on (\S+):(\d+)", line)
            if m and "warning" not in line:
                self.address = ("127.0.0.1", int(m.group(2)))
                break
            if time.monotonic() > deadline:
                raise RuntimeError("qriff serve did not start")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, "".join(self.stderr) + err


def test_serve_with_the_real_policy_pd_and_render(require_tool, tiny_model, tmp_path):
    pd = require_tool("pd")
    serve = Serve(tmp_path / "out", "--model", str(tiny_model))
    try:
        out = run_pd(pd, serve.address[1], "7 key D scale dorian bars 2 seed 11 variations 2 temperature 0.8")
        ends, notes = pd_lines(out, "END"), pd_lines(out, "NOTES")
        assert len(ends) == 2, out
        # what Pd printed is exactly what the engine makes for these arguments
        expected = Policy.load(tiny_model).generate(key="D", scale="dorian", bars=2, seed=11, count=2,
                                                    temperature=0.8)
        printed = [tuple(float(x) for x in line[1:]) for line in notes]
        flat = [q for row in printed for q in (row[i:i + 4] for i in range(0, len(row), 4))]
        want = [(n.pitch, n.start, n.duration, n.velocity) for c in expected for n in c.tracks[0].notes]
        assert flat == [pytest.approx(w, abs=1e-4) for w in want]
        for end, clip in zip(ends, expected):
            written = Clip.from_json(Path(end[4]).read_text())
            assert written.tracks[0].notes == clip.tracks[0].notes and written.model == "bridge-tiny"
        # render the last clip with the real renderer
        peer = Peer(serve.address)
        replies = peer.request("/qriff/render", 3, "reply_port", peer.port, until="/qriff/render/end", timeout=60)
        stems = [p for a, p in replies if a == "/qriff/render/stem"]
        assert replies[-1][0] == "/qriff/render/end", replies
        assert {s[1] for s in stems} >= {"lead", "mix"}
        assert all(Path(s[2]).is_file() and Path(s[2]).stat().st_size > 1000 for s in stems)
        assert all(Path(s[2]).resolve().is_relative_to((tmp_path / "out").resolve()) for s in stems)
        [(addr, params)] = peer.request("/qriff/get/model", 4)
        assert params == [4, "bridge-tiny"]
        # the loaded model first, then what engine.available_models() finds (the shipped ones)
        from engine import available_models

        [(addr, params)] = peer.request("/qriff/list/models", 5)
        assert params == [5, "bridge-tiny", *[e.model_id for e in available_models() if e.model_id != "bridge-tiny"]]
    finally:
        code, log = serve.stop(signal.SIGTERM)
    assert code == 0 and "stopped" in log and "Traceback" not in log


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_cleanly(tiny_model, tmp_path, sig):
    serve = Serve(tmp_path, "--model", str(tiny_model))
    peer = Peer(serve.address)
    assert peer.request("/qriff/ping", 1)[0][0] == "/qriff/pong"
    start = time.monotonic()
    code, log = serve.stop(sig)
    assert code == 0 and "qriff serve: stopped" in log and "Traceback" not in log
    assert time.monotonic() - start < 5


def test_non_loopback_host_warns_and_allow_limits(tiny_model, tmp_path):
    serve = Serve(tmp_path, "--model", str(tiny_model), "--host", "0.0.0.0", "--allow", "127.0.0.1/32")
    try:
        warning = "".join(serve.stderr)
        assert "warning" in warning and "exposes qriff to the network" in warning and "127.0.0.1/32" in warning
        peer = Peer(serve.address)
        assert peer.request("/qriff/ping", 1)[0][0] == "/qriff/pong"
    finally:
        serve.stop()


def test_shipped_model_makes_a_clip_on_a_fresh_clone(require_tool, tmp_path):
    if not DEFAULT_MODEL_PATH.is_file():
        msg = f"the shipped model {DEFAULT_MODEL_PATH} is missing"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    pd = require_tool("pd")
    serve = Serve(tmp_path)
    try:
        out = run_pd(pd, serve.address[1], "1 key A scale minor bars 4 seed 5")
    finally:
        serve.stop()
    [end] = pd_lines(out, "END")
    assert Path(end[3]).is_file() and len(pd_lines(out, "NOTES")) >= 1
