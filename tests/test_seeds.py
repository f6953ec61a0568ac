"""Statistics over training seeds, against scipy's own intervals and tests."""

import numpy as np
import pytest
from scipy import stats

from latent_atlas.analysis.seeds import over_seeds, paired_over_seeds, seed_of
from latent_atlas.errors import AtlasError


def test_over_seeds_matches_the_t_interval():
    values = {0: 0.31, 1: 0.35, 2: 0.29, 3: None}
    out = over_seeds(values)
    data = np.array([0.31, 0.35, 0.29])
    low, high = stats.t.interval(0.95, df=2, loc=data.mean(), scale=stats.sem(data))
    assert out["n"] == 3 and out["per_seed"] == {"0": 0.31, "1": 0.35, "2": 0.29}
    assert out["mean"] == pytest.approx(data.mean()) and out["sd"] == pytest.approx(data.std(ddof=1))
    assert (out["low"], out["high"]) == pytest.approx((low, high))


def test_one_seed_has_no_interval_and_none_has_no_mean():
    assert over_seeds({4: 1.0})["low"] is None and over_seeds({4: 1.0})["mean"] == 1.0
    assert over_seeds({})["mean"] is None


def test_paired_comparison_uses_common_seeds_and_the_paired_interval():
    a = {0: 0.25, 1: 0.27, 2: 0.24, 5: 9.0}
    b = {0: 0.33, 1: 0.36, 2: 0.31}
    out = paired_over_seeds(a, b, margin=0.01, names=("AE", "VAE"))
    assert out["seeds"] == [0, 1, 2]
    x, y = np.array([0.25, 0.27, 0.24]), np.array([0.33, 0.36, 0.31])
    interval = stats.ttest_rel(x, y).confidence_interval()
    assert (out["difference"]["low"], out["difference"]["high"]) == pytest.approx((interval.low, interval.high))
    assert out["verdict"]["kind"] == "b_greater" and out["verdict"]["verdict"] == "VAE > AE"


def test_paired_comparison_with_one_seed_says_it_cannot_decide():
    out = paired_over_seeds({0: 1.0}, {0: 2.0}, margin=0.1)
    assert out["verdict"]["kind"] == "too_few"


def test_noisy_equal_pairs_are_not_called_different():
    rng = np.random.default_rng(0)
    base = rng.normal(size=3)
    out = paired_over_seeds(dict(enumerate(base)), dict(enumerate(base + rng.normal(0, 0.5, 3))), margin=0.01)
    assert out["verdict"]["kind"] == "not_detected" and out["verdict"]["mdd"] > 0


def test_seed_of_reads_the_run_name():
    assert seed_of("gaussian-vae-latent_dim8-s12") == 12
    with pytest.raises(AtlasError):
        seed_of("gaussian-vae")


def test_values_equal_up_to_rounding_have_no_interval_and_no_test():
    # 3/12 - 2/12, 5/12 - 4/12 and 7/12 - 6/12 are all 1/12, but not in floating point: a t test would give p ~ 1e-32
    out = paired_over_seeds({0: 3 / 12, 1: 5 / 12, 2: 7 / 12}, {0: 2 / 12, 1: 4 / 12, 2: 6 / 12}, margin=0.1)
    assert np.ptp(np.array([3, 5, 7]) / 12 - np.array([2, 4, 6]) / 12) > 0  # the rounding the test is about
    assert out["verdict"]["kind"] == "constant" and out["verdict"]["p_value"] is None
    assert out["difference"]["low"] is None and out["difference"]["high"] is None
    tied = over_seeds({0: 0.5, 1: 0.5})
    assert tied["mean"] == 0.5 and tied["sd"] == 0.0 and tied["low"] is None and tied["high"] is None
    assert over_seeds({0: 0.5, 1: 0.5 + 1e-6})["low"] is not None  # a real, if small, spread keeps its interval


def test_too_few_seeds_names_how_many():
    assert paired_over_seeds({0: 1.0}, {1: 2.0}, margin=0.1)["verdict"]["verdict"].startswith("0 paired")
