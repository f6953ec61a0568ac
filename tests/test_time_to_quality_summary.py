"""benchmarks/time_to_quality.py --summarise: per-seed speed-ups over pythae and their summary over seeds."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_quality.py"
spec = importlib.util.spec_from_file_location("time_to_quality", SCRIPT)
time_to_quality = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = time_to_quality  # its dataclasses look their module up there
spec.loader.exec_module(time_to_quality)


def document(seed=0, pythae_reached=True):
    ours = {"name": "latent-atlas", "reached_at": {"epoch": 5, "wall_s": 20.0},
            "epoch_costs": [{"wall_s": 4.0}, {"wall_s": 3.0}, {"wall_s": 5.0}]}
    theirs = {"name": "pythae", "reached_at": {"epoch": 22, "wall_s": 132.0} if pythae_reached else None,
              "epoch_costs": [{"wall_s": 6.0}, {"wall_s": 7.0}, {"wall_s": 5.0}]}
    return {"seed": seed, "curves": [ours, theirs]}


def test_a_seed_gives_its_ratio_as_run_and_from_the_median_interleaved_epoch_costs():
    ratios = time_to_quality.seed_ratios(document())
    assert ratios["as run"] == pytest.approx(132.0 / 20.0)
    assert ratios["interleaved"] == pytest.approx((22 * 6.0) / (5 * 4.0))  # medians 6 and 4, not means


def test_a_seed_where_pythae_never_reached_the_target_is_named():
    with pytest.raises(SystemExit, match="seed 3 file pythae never reached"):
        time_to_quality.seed_ratios(document(seed=3, pythae_reached=False))


def test_summary_is_a_t_interval_and_one_sided_test_on_the_log_ratios():
    # logs are log 5 + (-d, 0, d) with d = log 1.25: mean log 5, sd d, t(0.975, 2 df) = 4.302653 (tables)
    summary = time_to_quality.ratio_summary([4.0, 5.0, 6.25], goal=5.0)
    half_width = 4.302653 * math.log(1.25) / math.sqrt(3)
    assert summary["geometric_mean"] == pytest.approx(5.0)
    assert summary["low"] == pytest.approx(5.0 * math.exp(-half_width), rel=1e-6)
    assert summary["high"] == pytest.approx(5.0 * math.exp(half_width), rel=1e-6)
    assert summary["p_above_goal"] == pytest.approx(0.5)  # the mean sits exactly on the goal
    assert time_to_quality.ratio_summary([6.0, 6.5, 7.0], goal=5.0)["p_above_goal"] < 0.05
    assert time_to_quality.ratio_summary([3.0, 3.5, 4.0], goal=5.0)["p_above_goal"] > 0.95


def test_a_file_that_is_not_an_out_file_is_named(tmp_path):
    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "ours_only.json").write_text('{"seed": 0, "curves": [{"name": "latent-atlas"}]}')
    with pytest.raises(SystemExit, match="empty.json is not a readable --out file"):
        time_to_quality.summarise([tmp_path / "empty.json"], goal=5.0)
    with pytest.raises(SystemExit, match="ours_only.json holds no latent-atlas and pythae curves"):
        time_to_quality.summarise([tmp_path / "ours_only.json"], goal=5.0)
