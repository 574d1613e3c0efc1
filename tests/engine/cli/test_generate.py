"""``qriff generate`` as a user runs it: files written, flags honoured, one-line errors with exit 2."""

from __future__ import annotations

import json

import pytest

from engine.mdp import observation, styles
from engine.music.clip import Clip
from engine.music.clipfile import load_clip

TERMS = styles.BUILTIN_TERMS


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from engine.learn.export import export_model
    from engine.learn.model import ModelConfig, QNetwork

    torch.set_num_threads(1)
    torch.manual_seed(1)
    net = QNetwork(ModelConfig(obs_dim=observation.obs_dim(len(TERMS)), hidden=(32,))).eval()
    path = tmp_path_factory.mktemp("cli-model") / "m.onnx"
    export_model(net, path, TERMS, model_id="cli-test")
    return str(path)


def test_writes_numbered_clips_in_both_formats(qriff, model, tmp_path):
    out = tmp_path / "clips"
    proc = qriff("generate", "--model", model, "--out", str(out), "--count", "3", "--format", "both",
                 "--key", "F#", "--scale", "dorian", "--bars", "2", "--seed", "40", "--tempo", "90",
                 "--chords", "i IV", "--style", "hook,rests=1", "--time-signature", "3/4", "--temperature", "0.8")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"clip-000{i}.{ext}" for i in range(3) for ext in ("json", "mid")]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3 and "clip-0000.mid" in lines[0] and "seed 40" in lines[0] and "seed 42" in lines[2]
    data = json.loads((out / "clip-0001.json").read_text())
    assert data["key"] == "F#" and data["scale"] == "dorian" and data["seed"] == 41 and data["tempo"] == 90.0
    assert data["time_signature"] == [3, 4] and data["bars"] == 2 and data["model"] == "cli-test"
    assert data["style"]["rests"] == 1.0 and data["chords"] == ["i", "IV"]
    mid = load_clip(out / "clip-0001.mid")
    assert mid.time_signature == (3, 4) and round(mid.tempo) == 90
    assert [n.pitch for n in mid.tracks[0].notes] == [n["pitch"] for n in data["tracks"][0]["notes"]]


def test_same_seed_same_files_and_roles(model, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        code, _ = _main(["generate", "--model", model, "--out", str(d), "--format", "json", "--seed", "9",
                         "--roles", "lead,bass", "--mood", "0.5,-0.5", "-q"], capsys)
        assert code == 0
    assert (a / "clip-0000.json").read_text() == (b / "clip-0000.json").read_text()
    clip = Clip.from_json((a / "clip-0000.json").read_text())
    assert [t.role for t in clip.tracks] == ["lead", "bass"]
    assert clip.style["chord"] == pytest.approx(styles.apply_mood(styles.parse_style(None), 0.5, -0.5)["chord"])


def test_primer_sets_key_and_length(model, tmp_path, capsys):
    first = tmp_path / "first"
    assert _main(["generate", "--model", model, "--out", str(first), "--key", "Eb", "--scale", "minor",
                  "--bars", "1", "--seed", "1", "--tempo", "100"], capsys)[0] == 0
    cont = tmp_path / "cont"
    code, err = _main(["generate", "--model", model, "--out", str(cont), "--primer", str(first / "clip-0000.mid"),
                       "--bars", "2", "--seed", "2", "--format", "json"], capsys)
    assert code == 0, err
    data = json.loads((cont / "clip-0000.json").read_text())
    assert data["bars"] == 3 and data["key"] == "Eb" and data["scale"] == "natural_minor"
    assert round(data["tempo"]) == 100


@pytest.mark.parametrize("args,needle", [
    (["--temperature", "-1"], "argument --temperature: -1 is out of range"),
    (["--count", "0"], "argument --count: 0 is out of range"),
    (["--count", "65"], "argument --count: 65 is out of range"),
    (["--bars", "99"], "argument --bars: 99 is out of range"),
    (["--style", "groove=2"], "style term 'groove' is not known"),
    (["--style", "polka"], "style 'polka' is not known"),
    (["--key", "H"], "key 'H'"),
    (["--roles", "lead,drums"], "argument --roles"),
    (["--mood", "2,0"], "argument --mood: valence 2"),
    (["--mood", "0.5"], "argument --mood"),
    (["--mood", "0,0", "--valence", "0.2"], "--mood and --valence/--arousal"),
    (["--format", "wav"], "argument --format"),
    (["--primer", "/nonexistent/x.mid"], "does not exist"),
    (["--model", "/nonexistent/m.onnx"], "model file '/nonexistent/m.onnx' does not exist"),
])
def test_bad_input_exits_2_with_one_line(model, tmp_path, capsys, args, needle):
    # In-process (engine.cli.main is the console script's entry point): the subprocess
    # path is covered above, and 14 interpreter starts would dominate the suite's time.
    argv = ["generate", "--out", str(tmp_path / "x"), *args]
    if "--model" not in args:
        argv += ["--model", model]
    code, err = _main(argv, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "x").exists()


def test_corrupt_model_exits_2(qriff, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    proc = qriff("generate", "--model", str(bad), "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "not a valid ONNX model" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def _main(argv, capsys):
    from engine.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit through SystemExit(2)
        code = exc.code
    return code, capsys.readouterr().err


def test_help_lists_every_flag(capsys):
    from engine.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["generate", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--key", "--scale", "--bars", "--tempo", "--chords", "--style", "--temperature", "--seed",
                 "--count", "--format", "--out", "--model", "--render", "--roles", "--primer", "--mood", "--valence",
                 "--arousal", "--time-signature", "--preset", "--instrument", "--sample-rate", "--audio-format"):
        assert flag in text, flag


def test_render_writes_stems(model, tmp_path, capsys):
    out = tmp_path / "r"
    code, err = _main(["generate", "--model", model, "--out", str(out), "--bars", "1", "--seed", "3", "--render",
                       "--roles", "lead,bass"], capsys)
    assert code == 0, err
    stems = sorted(p.name for p in (out / "clip-0000").iterdir())
    assert stems == ["bass.wav", "lead.wav", "mix.wav", "pianoroll.png"], stems


def test_render_takes_the_render_commands_audio_options(model, tmp_path, capsys):
    out = tmp_path / "r"
    code, err = _main(["generate", "--model", model, "--out", str(out), "--bars", "1", "--seed", "3", "--count", "2",
                       "--render", "--audio-format", "flac", "--bit-depth", "16", "--instrument", "lead=pluck",
                       "--pad", "--no-pianoroll", "--preset", "lofi"], capsys)
    assert code == 0, err
    for i in range(2):
        assert sorted(p.name for p in (out / f"clip-{i:04d}").iterdir()) == ["lead.flac", "mix.flac", "pad.flac"]


@pytest.mark.parametrize("flag, value", [("--sample-rate", "8000"), ("--bit-depth", "32"), ("--preset", "nope")])
def test_bad_audio_option_is_one_line(qriff, model, tmp_path, flag, value):
    proc = qriff("generate", "--model", model, "--out", str(tmp_path / "o"), "--render", flag, value)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and value in proc.stderr, proc.stderr


def test_shipped_model_generates_with_no_flags(tmp_path, capsys, monkeypatch):
    from engine.runtime import DEFAULT_MODEL_PATH, Policy

    if not DEFAULT_MODEL_PATH.is_file():
        pytest.skip("no shipped model in this checkout")
    assert DEFAULT_MODEL_PATH.stat().st_size < 5_000_000
    info = Policy.load().info
    assert info.metadata["train_command"].startswith("qriff train") and info.train_metrics["env_steps"] > 0
    monkeypatch.chdir(tmp_path)
    code, err = _main(["generate"], capsys)
    assert code == 0, err
    assert (tmp_path / "qriff-clips" / "clip-0000.mid").is_file()


def test_a_second_run_numbers_after_the_highest_clip_and_replaces_nothing(model, tmp_path, capsys):
    out = tmp_path / "clips"
    base = ["generate", "--model", model, "--out", str(out), "--format", "both", "-q"]
    assert _main([*base, "--seed", "1", "--count", "2"], capsys)[0] == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "clip-0007.json").write_text("a clip the musician renamed into this folder")
    (out / "notes.txt").write_text("not a clip")
    assert _main([*base, "--seed", "2"], capsys)[0] == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["clip-0000.json", "clip-0000.mid", "clip-0001.json", "clip-0001.mid", "clip-0007.json",
                     "clip-0008.json", "clip-0008.mid", "notes.txt"]
    assert all((out / n).read_bytes() == data for n, data in first.items())
    assert Clip.from_json((out / "clip-0008.json").read_text()).seed == 2


def test_overwrite_replaces_on_request(model, tmp_path, capsys):
    out = tmp_path / "clips"
    base = ["generate", "--model", model, "--out", str(out), "--format", "json", "-q"]
    assert _main([*base, "--seed", "1"], capsys)[0] == 0
    assert _main([*base, "--seed", "5", "--overwrite"], capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip-0000.json"]
    assert Clip.from_json((out / "clip-0000.json").read_text()).seed == 5


def test_a_name_taken_meanwhile_is_skipped_not_replaced(tmp_path):
    from engine.base.files import atomic_write
    from engine.cli.generate import _write_clip

    mine = atomic_write(tmp_path / "clip-0003.mid", b"someone else's file")
    clip = Clip(bars=1, seed=1, tracks=[])
    written, number = _write_clip(clip, tmp_path, 3, "both", overwrite=False)  # as if listed before it appeared
    assert number == 4 and [p.name for p in written] == ["clip-0004.mid", "clip-0004.json"]
    assert mine.read_bytes() == b"someone else's file" and not (tmp_path / "clip-0003.json").exists()
    with pytest.raises(FileExistsError):
        atomic_write(mine, b"x", replace=False)
    assert mine.read_bytes() == b"someone else's file" and len(list(tmp_path.iterdir())) == 3
