"""Sweep files and batch specs, the bad-input paths of the scale-out commands, and ``qriff batch --local``.

None of these starts Ray: the Ray tests (two simulated nodes) are in test_cluster.py.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import time

import pytest

from engine.base.cluster import ScaleoutError, check_reachable
from engine.scaleout.batch import load_batch, run_batch

BATCH = """\
count = 2
seed = 5
presets = ["dry", "lofi"]
[[setting]]
key = "D"
scale = "dorian"
style = "hook"
bars = 1
[[setting]]
name = "c-folk"
key = "C"
bars = 1
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------- sweep file

@pytest.fixture
def sweep_file(tmp_path):
    pytest.importorskip("torch")

    def make(body: str, head: str = 'preset = "tiny"\nmetric = "folk.not_in_key"\nmode = "min"\n'):
        return write(tmp_path, "sweep.toml", head + body)

    return make


def test_sweep_trials_are_the_plain_train_configs(sweep_file, tmp_path):
    from engine.cli import build_parser
    from engine.cli.train import build_config
    from engine.scaleout.sweep import load_sweep

    path = sweep_file('seeds = [0, 3]\n[set]\neval_corpus = false\n[grid]\ngamma = [0.8, 0.9]\n"style.motif" = [2]\n')
    spec = load_sweep(path, tmp_path / "out")
    assert [t.name for t in spec.trials] == ["trial-000", "trial-001", "trial-002", "trial-003"]
    assert spec.swept == ["gamma", "style.motif", "seed"]
    t = spec.trials[1]
    assert t.params == {"gamma": 0.8, "style.motif": 2, "seed": 3}
    assert t.config["gamma"] == 0.8 and t.config["seed"] == 3 and t.config["env"]["style"] == "folk,motif=2"
    # the recorded command, parsed by qriff, gives the trial's config exactly
    args = build_parser().parse_args(shlex.split(t.command)[1:])
    assert {**build_config(args).to_dict(), "quiet": True} == t.config  # trials run without a bar
    assert t.config["out_dir"] == str((tmp_path / "out" / "trials" / "trial-001").resolve())


@pytest.mark.parametrize("body, message", [
    ("[grid]\ngama = [0.8]\n", "unknown key 'grid.gama'"),
    ("[grid]\n\"env.bar\" = [[1, 2]]\n", "unknown key 'grid.env.bar'"),
    ("[set]\nlearning_rat = 0.1\n", "unknown key 'set.learning_rat'"),
    ("[grid]\ngamma = []\n", "grid.gamma must be a non-empty list"),
    ("[grid]\ngamma = [2.0]\n", "gamma=2.0 is out of range"),
    ("seeds = [-1]\n", "seeds [-1]"),
    ("[grid]\n\"env.scales\" = [[\"klingon\"]]\n", "klingon"),
])
def test_bad_sweep_files_name_the_key(sweep_file, tmp_path, body, message):
    from engine.scaleout.sweep import load_sweep

    with pytest.raises(ScaleoutError, match="sweep file .*" + message.replace("[", r"\[").replace("]", r"\]")):
        load_sweep(sweep_file(body), tmp_path / "out")


def test_sweep_metric_must_be_one_the_evaluation_reports(sweep_file, tmp_path):
    from engine.scaleout.sweep import load_sweep

    with pytest.raises(ScaleoutError, match="'overlap_pitch' is not a metric.*overlap_pitch_class"):
        load_sweep(sweep_file("", head='preset = "tiny"\nmetric = "folk.overlap_pitch"\n'), tmp_path)
    with pytest.raises(ScaleoutError, match="style 'jazz' is not evaluated"):
        load_sweep(sweep_file("", head='preset = "tiny"\nmetric = "jazz.not_in_key"\n'), tmp_path)
    with pytest.raises(ScaleoutError, match="unknown key 'metrc'"):
        load_sweep(sweep_file("", head='preset = "tiny"\nmetrc = "folk.not_in_key"\n'), tmp_path)


def test_results_table_and_plot(tmp_path):
    from engine.scaleout.sweep import plot_metric, results_markdown

    doc = {"file": "s.toml", "metric": "folk.x", "mode": "max", "swept": ["gamma", "seed"], "best": "trial-001",
           "wall_s": 12.0, "trials": [
               {"trial": "trial-001", "params": {"gamma": 0.9, "seed": 0}, "value": 0.5, "node": "abcdef0123",
                "train_wall_s": 3.0, "command": "qriff train --set gamma=0.9", "error": None},
               {"trial": "trial-000", "params": {"gamma": 0.8, "seed": 0}, "value": 0.25, "node": "abcdef0123",
                "train_wall_s": 3.0, "command": "qriff train --set gamma=0.8", "error": None},
               {"trial": "trial-002", "params": {"gamma": 0.8, "seed": 1}, "value": None, "node": None,
                "train_wall_s": None, "command": "qriff train", "error": "no result"}]}
    md = results_markdown(doc).splitlines()
    assert md[4] == "| rank | trial | gamma | seed | folk.x | train s | node | status |"
    assert md[6] == "| 1 | trial-001 | 0.9 | 0 | 0.5000 | 3.0 | abcdef01 | ok |"
    assert md[8].endswith("| failed: no result |")
    png = plot_metric(doc, tmp_path / "m.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------- batch spec

@pytest.mark.parametrize("text, message", [
    (BATCH.replace("bars = 1\n[[setting]]", "bars = 20\n[[setting]]"), r"setting 1 \(00-d-dorian-hook\) is impossible: bars"),
    (BATCH.replace('scale = "dorian"', 'scale = "klingon"'), "setting 1 .* is impossible: .*klingon"),
    (BATCH.replace('key = "C"', 'key = "C"\ntempo = 900'), "setting 2 .* is impossible: tempo"),
    (BATCH.replace('key = "C"', 'key = "C"\nchords = "Q7 X"'), "setting 2 .* is impossible"),
    (BATCH.replace("count = 2", "count = 0"), "count 0 is not an integer"),
    (BATCH.replace('["dry", "lofi"]', '["dry", "nope"]'), "nope"),
    (BATCH.replace("seed = 5", "seed = 5\nformat = \"flac\"\nbit_depth = \"32f\""), "bit_depth '32f' is not valid: allowed for flac, one of 16, 24"),
    (BATCH.replace("seed = 5", "sead = 5"), "unknown key 'sead'"),
    (BATCH.replace('style = "hook"', 'stlye = "hook"'), "setting 1: unknown key 'stlye'"),
    (BATCH.replace('name = "c-folk"', 'name = "00-D-dorian-hook"'), "name '00-d-dorian-hook' is used twice"),
])
def test_impossible_batch_specs_fail_before_any_work(tmp_path, text, message):
    with pytest.raises(ScaleoutError, match="batch spec .*" + message):
        load_batch(write(tmp_path, "b.toml", text))


@pytest.mark.slow  # CLI subprocesses
def test_local_batch_resumes_and_matches_one_by_one(tmp_path, qriff):
    spec = load_batch(write(tmp_path, "b.toml", BATCH))
    assert len(spec.units) == 4
    out = tmp_path / "pack"
    first = run_batch(spec, out, local=True, quiet=True)
    assert first["made"] == 4 and first["skipped"] == 0
    rows = json.loads((out / "manifest.json").read_text())
    assert len(rows) == 8
    assert [(r["setting"], r["seed"], r["preset"]) for r in rows[:4]] == [
        ("00-d-dorian-hook", 5, "dry"), ("00-d-dorian-hook", 5, "lofi"),
        ("00-d-dorian-hook", 6, "dry"), ("00-d-dorian-hook", 6, "lofi")]
    assert {r["style"] for r in rows} == {"hook", "default"}
    csv_head = (out / "manifest.csv").read_text().splitlines()[0].split(",")
    assert csv_head[:7] == ["file", "key", "scale", "style", "seed", "preset", "loudness"]
    assert all((out / r["file"]).is_file() and r["loudness"] < 0 for r in rows)

    # One by one: qriff generate with the clip's seed, then qriff render of the written JSON.
    one = tmp_path / "one"
    r = qriff("generate", "--key", "D", "--scale", "dorian", "--style", "hook", "--bars", "1", "--seed", "6",
              "--format", "both", "--out", str(one), "-q")
    assert r.returncode == 0, r.stderr
    r = qriff("render", str(one / "clip-0000.json"), "--preset", "lofi", "--out", str(one / "lofi"),
              "--no-pianoroll", "--quiet")
    assert r.returncode == 0, r.stderr
    unit = out / "00-d-dorian-hook" / "000006"
    for mine, theirs in (("clip.json", "clip-0000.json"), ("clip.mid", "clip-0000.mid"),
                         ("lofi/mix.wav", "lofi/mix.wav"), ("lofi/lead.wav", "lofi/lead.wav")):
        assert (unit / mine).read_bytes() == (one / theirs).read_bytes(), mine

    # A re-run skips what is done; a unit whose files went missing is made again, identically.
    before = (unit / "lofi" / "mix.wav").read_bytes()
    (unit / "lofi" / "mix.wav").unlink()
    again = run_batch(spec, out, local=True, quiet=True)
    assert again["made"] == 1 and again["skipped"] == 3
    assert (unit / "lofi" / "mix.wav").read_bytes() == before
    assert json.loads((out / "manifest.json").read_text()) == rows


def test_a_batch_rerun_into_the_same_folder_rewrites_nothing(tmp_path):
    """qriff batch names clips by setting and seed and resumes: a second run leaves every file as it was."""
    spec = load_batch(write(tmp_path, "b.toml", 'count = 1\nseed = 3\npresets = ["dry"]\nsample_rate = 22050\n'
                            '[[setting]]\nkey = "C"\nbars = 1\n'))
    out = tmp_path / "pack"
    assert run_batch(spec, out, local=True, quiet=True)["made"] == 1

    def state():  # the manifests are summaries, rewritten (identically) by every run; the clips are not
        return {p: (None if p.name.startswith("manifest.") else p.stat().st_mtime_ns, p.read_bytes())
                for p in out.rglob("*") if p.is_file()}

    files = state()
    assert any(p.name == "clip.mid" for p in files)
    again = run_batch(spec, out, local=True, quiet=True)
    assert again["made"] == 0 and again["skipped"] == 1
    assert state() == files


# ------------------------------------------------------------------ bad input, CLI

@pytest.mark.slow  # CLI subprocesses
def test_bad_batch_spec_exits_2_without_a_manifest(qriff, tmp_path):
    spec = write(tmp_path, "b.toml", BATCH.replace("bars = 1\n[[setting]]", "bars = 40\n[[setting]]"))
    r = qriff("batch", str(spec), "--out", str(tmp_path / "o"), "--local")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "is impossible: bars" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # CLI subprocesses
def test_unknown_sweep_key_and_unreachable_address_exit_2(qriff, tmp_path):
    pytest.importorskip("ray")
    spec = write(tmp_path, "s.toml", 'preset = "tiny"\nmetric = "folk.not_in_key"\n[grid]\ngama = [0.8]\n')
    r = qriff("train", "--sweep", str(spec), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "unknown key 'grid.gama'" in r.stderr and not (tmp_path / "o").exists()
    spec.write_text('preset = "tiny"\nmetric = "folk.not_in_key"\n')
    r = qriff("train", "--sweep", str(spec), "--out", str(tmp_path / "o"), "--ray-address", f"127.0.0.1:{_closed_port()}")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is not reachable" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # CLI subprocesses
def test_unreachable_ray_address_exits_2_quickly(qriff, tmp_path):
    pytest.importorskip("ray")
    port = _closed_port()
    spec = write(tmp_path, "b.toml", BATCH)
    start = time.monotonic()
    r = qriff("batch", str(spec), "--out", str(tmp_path / "o"), "--ray-address", f"127.0.0.1:{port}")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and f"--ray-address '127.0.0.1:{port}' is not reachable" in r.stderr
    assert time.monotonic() - start < 60
    assert not (tmp_path / "o" / "manifest.csv").exists()


def test_unreachable_address_times_out():
    # 192.0.2.0/24 is TEST-NET-1: nothing answers there, so only the timeout can end the wait.
    start = time.monotonic()
    with pytest.raises(ScaleoutError, match=r"not reachable within 0.5 s"):
        check_reachable("192.0.2.1:6379", timeout=0.5)
    assert time.monotonic() - start < 5
    with pytest.raises(ScaleoutError, match="is not HOST:PORT"):
        check_reachable("localhost")


BLOCK_RAY = """
import sys
class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError("No module named 'ray'", name="ray")
sys.meta_path.insert(0, NoRay())
from engine.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # CLI subprocesses
@pytest.mark.parametrize("argv", [["batch", "SPEC"], ["train", "--sweep", "SPEC"]])
def test_without_the_ray_extra_exits_2_with_the_install_hint(tmp_path, argv):
    from tests.conftest import ROOT

    spec = write(tmp_path, "b.toml", BATCH)
    argv = [str(spec) if a == "SPEC" else a for a in argv]
    r = subprocess.run([sys.executable, "-c", BLOCK_RAY, *argv, "--out", str(tmp_path / "o")], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "pip install 'qriff[ray]'" in r.stderr
    assert not (tmp_path / "o").exists()
