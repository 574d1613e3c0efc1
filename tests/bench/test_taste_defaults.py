"""bench/taste_defaults.py, the study that chose qriff tune's defaults on the development tastes, still runs."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import taste_defaults  # noqa: E402


def test_a_variant_must_be_a_tuning_setting():
    assert taste_defaults.parse_variant("kl_coef=2;lam=0.5") == {"kl_coef": 2, "lam": 0.5}
    assert taste_defaults.parse_variant("") == {}
    with pytest.raises(SystemExit, match="'klcoef' is not a TuneConfig setting"):
        taste_defaults.parse_variant("klcoef=2")
    with pytest.raises(SystemExit, match="'seed' is not a TuneConfig setting"):
        taste_defaults.parse_variant("seed=3")


@pytest.mark.slow
def test_a_tiny_study_tunes_each_variant_on_the_same_verdicts(tmp_path, capsys):
    out = tmp_path / "rows.json"
    rc = taste_defaults.main(["--tastes", "leapy-wide", "--seeds", "0", "--variant", "episodes=16",
                              "--variant", "episodes=16;kl_coef=3.0", "--verdicts", "40", "--clips", "20",
                              "--realism-clips", "0", "--out", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())
    assert [r["variant"] for r in rows] == ["episodes=16", "episodes=16;kl_coef=3.0"]
    # the same verdicts and fresh clips: the shipped side and the reward model are shared
    assert rows[0]["base_keep"] == rows[1]["base_keep"] and rows[0]["reward_auc"] == rows[1]["reward_auc"]
    for r in rows:
        assert 0.0 < r["tuned_keep"] < 1.0 and r["gain"] == pytest.approx(r["tuned_keep"] / r["base_keep"] - 1, abs=1e-3)
    assert "Runs in every variant: 1 (leapy-wide 0)" in capsys.readouterr().out
