"""Switching the served model over OSC: ``/qriff/set/model``, ``/qriff/list/models`` and PolicySource.

Everything here runs the real onnxruntime policies (:class:`bridge.source.PolicySource`)
on tiny model files in a models folder of the test's own (``QRIFF_MODEL_DIR``): two
plain ones and a personal one that reads the ``taste`` style term, as ``qriff tune``
writes it (tests/bridge/tiny_models.py).
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from bridge.source import PolicySource
from engine.feedback import FeedbackStore
from engine.runtime import Policy, available_models
from tests.bridge.support import Peer, running_server
from tests.bridge.tiny_models import write_tiny_model

pytest.importorskip("torch")  # the tiny models are exported from torch


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Model files by id, outside any models folder: plain-a, plain-b, mine (personal), late."""
    where = tmp_path_factory.mktemp("built")
    return {"plain-a": write_tiny_model(where / "plain-a.onnx", "plain-a"),
            "plain-b": write_tiny_model(where / "plain-b.onnx", "plain-b", seed=1),
            "mine": write_tiny_model(where / "mine.onnx", "mine", personal=True),
            "late": write_tiny_model(where / "late.onnx", "late", seed=2)}


@pytest.fixture
def folder(tmp_path, monkeypatch, built) -> Path:
    """The user's models folder for one test, holding plain-a, plain-b and mine (not late)."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("plain-a", "plain-b", "mine"):
        shutil.copy(built[name], models / f"{name}.onnx")
    monkeypatch.setenv("QRIFF_MODEL_DIR", str(models))
    return models


def one(peer: Peer, address: str, *args: Any) -> tuple[str, list[Any]]:
    [reply] = peer.request(address, *args)
    return reply


def clip_model(peer: Peer, rid: int, *options: Any) -> dict[str, Any]:
    """Generate one clip; its JSON as written in the output folder."""
    replies = peer.request("/qriff/generate", rid, "bars", 1, *options, until="/qriff/clip/end")
    assert replies[-1][0] == "/qriff/clip/end", replies
    return json.loads(Path(replies[-1][1][4]).read_text())


# ------------------------------------------------------------------ switching


def test_set_model_switches_what_generates_and_get_reports_it(tmp_path, folder):
    with running_server(tmp_path, PolicySource("plain-a")) as srv:
        peer = Peer(srv.address)
        assert one(peer, "/qriff/get/model", 1) == ("/qriff/get/model", [1, "plain-a"])
        assert clip_model(peer, 2)["model"] == "plain-a"
        assert one(peer, "/qriff/set/model", 3, "plain-b") == ("/qriff/set/model", [3, "plain-b"])
        assert one(peer, "/qriff/get/model", 4) == ("/qriff/get/model", [4, "plain-b"])
        assert clip_model(peer, 5)["model"] == "plain-b"
        # the shipped model is one of the list too
        assert one(peer, "/qriff/set/model", 6, "qriff-default-3")[0] == "/qriff/set/model"
        assert clip_model(peer, 7)["model"] == "qriff-default-3"


def test_an_unknown_model_is_refused_naming_the_allowed_ids(tmp_path, folder):
    with running_server(tmp_path, PolicySource("plain-a")) as srv:
        peer = Peer(srv.address)
        addr, params = one(peer, "/qriff/set/model", 1, "nope")
        assert addr == "/qriff/error" and params[:2] == [1, "not_found"]
        assert params[2].startswith("model 'nope' is not known: allowed are ") and "\n" not in params[2]
        assert all(m in params[2] for m in ("plain-a", "plain-b", "mine", "qriff-default-3"))
        addr, params = one(peer, "/qriff/set/model", 2, 7)  # an index is not an id
        assert addr == "/qriff/error" and params[1] == "not_found" and "model '7' is not known" in params[2]
        addr, params = one(peer, "/qriff/set/model", 3)
        assert addr == "/qriff/error" and params[1] == "bad_request"
        assert one(peer, "/qriff/get/model", 4) == ("/qriff/get/model", [4, "plain-a"])


def test_a_model_file_that_fails_to_load_is_refused_and_the_old_one_stays(tmp_path, folder):
    with running_server(tmp_path, PolicySource("plain-a")) as srv:
        peer = Peer(srv.address)
        assert "plain-b" in one(peer, "/qriff/list/models", 1)[1]  # the menu shows it
        (folder / "plain-b.onnx").write_bytes(b"not an onnx model")  # then the file breaks
        addr, params = one(peer, "/qriff/set/model", 2, "plain-b")
        assert addr == "/qriff/error" and params[:2] == [2, "model"]
        assert "model 'plain-b' could not be loaded" in params[2] and "still generating with 'plain-a'" in params[2]
        assert one(peer, "/qriff/get/model", 3) == ("/qriff/get/model", [3, "plain-a"])
        assert clip_model(peer, 4)["model"] == "plain-a"
        assert "plain-b" not in one(peer, "/qriff/list/models", 5)[1]  # skipped now, with a warning in the log
        # a file replaced by another model is refused too: the id the menu showed is not what it holds
        shutil.copy(folder / "mine.onnx", folder / "plain-b.onnx")
        source = srv.source
        assert isinstance(source, PolicySource)
        source._listed["plain-b"] = folder / "plain-b.onnx"  # as listed just before the file was replaced
        addr, params = one(peer, "/qriff/set/model", 6, "plain-b")
        assert params[1] == "model" and "now holds model 'mine'" in params[2]


def test_the_list_reads_the_models_folder_again(tmp_path, folder, built):
    """A model qriff tune writes while the server runs is listed and served without a restart."""
    with running_server(tmp_path, PolicySource("plain-a")) as srv:
        peer = Peer(srv.address)
        before = one(peer, "/qriff/list/models", 1)[1][1:]
        assert before == [e.model_id for e in available_models()] and "late" not in before
        shutil.copy(built["late"], folder / "late.onnx")
        after = one(peer, "/qriff/list/models", 2)[1][1:]
        assert after == [e.model_id for e in available_models()] and set(after) == {*before, "late"}
        assert one(peer, "/qriff/set/model", 3, "late") == ("/qriff/set/model", [3, "late"])
        assert clip_model(peer, 4)["model"] == "late"
        (folder / "late.onnx").unlink()  # gone from the folder: still loaded, still listed while current
        assert "late" in one(peer, "/qriff/list/models", 5)[1]
        assert one(peer, "/qriff/set/model", 6, "plain-a")[0] == "/qriff/set/model"
        assert "late" not in one(peer, "/qriff/list/models", 7)[1]


def test_the_first_model_from_a_file_outside_the_folder_stays_selectable(tmp_path, folder, built):
    """qriff serve --model PATH: that model is listed first and can be switched back to."""
    source = PolicySource(built["late"])
    with running_server(tmp_path, source) as srv:
        peer = Peer(srv.address)
        listed = one(peer, "/qriff/list/models", 1)[1][1:]
        assert listed[0] == "late" and {"plain-a", "mine"} <= set(listed)
        assert one(peer, "/qriff/set/model", 2, "mine")[0] == "/qriff/set/model"
        assert one(peer, "/qriff/set/model", 3, "late") == ("/qriff/set/model", [3, "late"])
        assert one(peer, "/qriff/list/models", 4)[1][1:] == listed  # the order does not follow the switches


# ------------------------------------------------------------------ style terms


def test_a_personal_model_reads_taste_and_the_shipped_one_refuses_it(tmp_path, folder):
    with running_server(tmp_path, PolicySource("mine")) as srv:
        peer = Peer(srv.address)
        assert one(peer, "/qriff/set/style", 1, "hook,taste=3") == ("/qriff/set/style", [1, "hook,taste=3"])
        clip = clip_model(peer, 2)
        assert clip["model"] == "mine" and clip["style"]["taste"] == 3.0
        assert clip_model(peer, 3, "style", "folk,taste=-2")["style"]["taste"] == -2.0
        # switching to a model that does not read the session style is refused, and nothing changes
        addr, params = one(peer, "/qriff/set/model", 4, "plain-a")
        assert addr == "/qriff/error" and params[:2] == [4, "bad_value"]
        assert "style 'hook,taste=3' is not valid for model 'plain-a'" in params[2]
        assert "'taste' is not known" in params[2] and "/qriff/set/style 1 folk" in params[2]
        assert "still generating with 'mine'" in params[2] and "\n" not in params[2]
        assert one(peer, "/qriff/get/model", 5) == ("/qriff/get/model", [5, "mine"])
        assert one(peer, "/qriff/get/style", 6) == ("/qriff/get/style", [6, "hook,taste=3"])
        # with a style both read, the switch goes through
        assert one(peer, "/qriff/set/style", 7, "hook")[0] == "/qriff/set/style"
        assert one(peer, "/qriff/set/model", 8, "plain-a") == ("/qriff/set/model", [8, "plain-a"])
        # and now taste is refused where it is set and where it is asked for
        for address, args in (("/qriff/set/style", (9, "folk,taste=1")), ("/qriff/generate", (9, "style", "taste=1"))):
            addr, params = one(peer, address, *args)
            assert addr == "/qriff/error" and params[1] == "bad_value", params
            assert "is not valid for model 'plain-a'" in params[2] and "'taste' is not known" in params[2]
        assert one(peer, "/qriff/get/style", 10) == ("/qriff/get/style", [10, "hook"])
        # a term no model reads is refused as before, naming every term a model may read
        addr, params = one(peer, "/qriff/set/style", 11, "sparkle=1")
        assert params[1] == "bad_value" and "'sparkle' is not known" in params[2] and "taste" in params[2]


# ------------------------------------------------------------------ queued jobs and verdicts


class GatedSource(PolicySource):
    """The real source, whose policy calls wait until ``gate`` opens: a worker busy with a long request."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.gate = threading.Event()
        self.busy = threading.Event()

    def generate(self, request: Any = None, /, *, model: str | None = None, **options: Any) -> Any:
        self.busy.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return super().generate(request, model=model, **options)


def test_queued_requests_keep_their_model_and_verdicts_record_the_real_one(tmp_path, folder):
    source = GatedSource("plain-a")
    with running_server(tmp_path, source) as srv:
        peer = Peer(srv.address)
        peer.send("/qriff/generate", 1, "bars", 1)  # the worker takes it and waits
        assert source.busy.wait(10)
        peer.send("/qriff/generate", 2, "bars", 1)  # queued behind it, with plain-a
        # switching answers at once, while both wait
        assert one(peer, "/qriff/set/model", 3, "plain-b") == ("/qriff/set/model", [3, "plain-b"])
        peer.send("/qriff/generate", 4, "bars", 1)  # queued with plain-b: not batched with 2
        source.gate.set()
        ends: dict[int, list[Any]] = {}
        while len(ends) < 3:
            addr, params, _ = peer.recv(10)
            assert addr != "/qriff/error", params
            if addr == "/qriff/clip/end":
                ends[params[0]] = params
        models = {rid: json.loads(Path(end[4]).read_text())["model"] for rid, end in ends.items()}
        assert models == {1: "plain-a", 2: "plain-a", 4: "plain-b"}
        for rid in (2, 4):
            name = Path(ends[rid][4]).name
            assert one(peer, "/qriff/feedback", 10 + rid, name, "keep")[0] == "/qriff/feedback/stored"
    with FeedbackStore(tmp_path / "feedback.sqlite") as store:
        recorded = {Path(v.clip_path).name: v.model for v in store.verdicts()}
    assert recorded == {Path(ends[2][4]).name: "plain-a", Path(ends[4][4]).name: "plain-b"}


# ------------------------------------------------------------------ the cache


def test_switching_back_and_forth_loads_nothing_again_and_the_cache_is_bounded(folder, monkeypatch):
    loads: list[str] = []
    real = Policy.load.__func__  # type: ignore[attr-defined]

    def counting(cls: type, model: Any = None) -> Policy:
        loads.append(Path(str(model)).stem if model is not None else "default")
        return real(cls, model)

    monkeypatch.setattr(Policy, "load", classmethod(counting))
    source = PolicySource("plain-a", cache_size=2)
    for model in ("plain-b", "plain-a", "plain-b", "plain-a", "plain-b"):
        assert source.select(model) == model and source.model_id == model
    assert loads == ["plain-a", "plain-b"]  # each loaded once
    source.select("mine")  # a third model: the least recently used one (plain-a) is dropped
    source.select("plain-b")
    assert loads == ["plain-a", "plain-b", "mine"]
    source.select("plain-a")
    assert loads == ["plain-a", "plain-b", "mine", "plain-a"]
    # generating with a model evicted since its job was queued loads it again
    clips = source.generate(model="mine", bars=1, seed=3)
    assert clips[0].model == "mine" and source.model_id == "plain-a"


# ------------------------------------------------------------------ qriff serve, end to end


def test_qriff_serve_switches_to_a_personal_model_end_to_end(tmp_path, folder, monkeypatch):
    """qriff serve --model ID in a subprocess: list, switch to the personal model, dial taste, generate, keep."""
    from tests.bridge.test_cli import Serve

    store = tmp_path / "verdicts.sqlite"
    monkeypatch.setenv("QRIFF_FEEDBACK_DB", str(store))
    serve = Serve(tmp_path / "out", "--model", "plain-a")
    try:
        peer = Peer(serve.address)
        assert one(peer, "/qriff/get/model", 1) == ("/qriff/get/model", [1, "plain-a"])
        assert {"plain-a", "plain-b", "mine", "qriff-default-3"} <= set(one(peer, "/qriff/list/models", 2)[1])
        assert one(peer, "/qriff/set/model", 3, "mine") == ("/qriff/set/model", [3, "mine"])
        assert one(peer, "/qriff/set/style", 4, "hook,taste=3")[0] == "/qriff/set/style"
        replies = peer.request("/qriff/generate", 5, "bars", 2, "seed", 7, until="/qriff/clip/end")
        end = replies[-1][1]
        clip = json.loads(Path(end[4]).read_text())
        assert clip["model"] == "mine" and clip["style"]["taste"] == 3.0 and clip["seed"] == 7
        # exactly the clip the personal model makes for these settings
        expected = Policy.load(folder / "mine.onnx").generate(bars=2, seed=7, style="hook,taste=3")[0]
        assert [n["pitch"] for n in clip["tracks"][0]["notes"]] == [n.pitch for n in expected.tracks[0].notes]
        stored = one(peer, "/qriff/feedback", 6, Path(end[4]).name, "keep", "source", "device")
        assert stored == ("/qriff/feedback/stored", [6, Path(end[4]).name, "keep", 0])
    finally:
        code, log = serve.stop()
    assert code == 0 and "Traceback" not in log and "model plain-a" in log
    with FeedbackStore(store) as db:
        [verdict] = list(db.verdicts())
    assert verdict.model == "mine" and verdict.style["taste"] == 3.0 and verdict.source == "device"


def test_a_cache_of_one_holds_just_the_current_model(folder):
    source = PolicySource("plain-a", cache_size=1)
    for model in ("plain-b", "mine", "plain-a"):
        assert source.select(model) == model
        assert source.generate(bars=1, seed=1)[0].model == model
    assert list(source._cache) == ["plain-a"]
    assert source.generate(model="mine", bars=1, seed=1)[0].model == "mine"  # a queued job's model, reloaded
    assert source.model_id == "plain-a" and list(source._cache) == ["plain-a", "mine"]
