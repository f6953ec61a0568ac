"""Threshold-free evidence: known answers and direct scipy / statsmodels calls as references."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, norm, ttest_rel
from statsmodels.stats.power import NormalIndPower, TTestPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    tost_proportions_2indep,
)
from statsmodels.stats.proportion import test_proportions_2indep as two_proportion_test
from statsmodels.stats.weightstats import ttost_paired

from latent_atlas.analysis.evidence import (
    common_grid,
    compare_validity,
    conclusion_stability,
    delong_placements,
    difference_verdict,
    ecdf_curves,
    equivalence_proportions,
    minimum_detectable_difference,
    paired_difference_verdict,
    proportion_difference,
    rank_comparison,
    threshold_multipliers,
    validity_curve,
)
from latent_atlas.analysis.holes import valid_fraction
from latent_atlas.errors import AtlasError


def booleans(count: int, n: int) -> np.ndarray:
    return np.arange(n) < count


def test_ecdf_curves_are_the_share_at_or_below_each_grid_value():
    rng = np.random.default_rng(0)
    groups = {"vae": rng.lognormal(-3, 1, 150), "ae": rng.lognormal(-2, 1.5, 90)}
    curves = ecdf_curves(groups, n_points=50, include=(0.05,))
    grid = np.asarray(curves["grid"])
    assert 0.05 in grid and np.all(np.diff(grid) > 0)
    pooled = np.concatenate(list(groups.values()))
    assert grid[0] == pooled.min() and grid[-1] == pooled.max()
    for name, values in groups.items():
        expected = (values[None, :] <= grid[:, None]).mean(axis=1)
        np.testing.assert_allclose(curves["groups"][name]["cdf"], expected, atol=1e-12)
        assert curves["groups"][name]["n"] == len(values)
        assert curves["groups"][name]["median"] == pytest.approx(np.median(values))
    json.dumps(curves, allow_nan=False)


def test_common_grid_is_log_spaced_and_falls_back_to_linear():
    grid = common_grid([np.array([0.0, 1e-6, 1e-2]), np.array([1.0])], n_points=7)
    np.testing.assert_allclose(grid, np.geomspace(1e-6, 1.0, 7))  # the zero has no place on a log axis
    np.testing.assert_allclose(common_grid([np.zeros(4)], n_points=3), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(common_grid([np.array([2.0, 4.0])], n_points=3, log=False), [2.0, 3.0, 4.0])
    with pytest.raises(AtlasError, match="finite"):
        common_grid([np.array([1.0, np.nan])])


def test_validity_curve_counts_shape_and_range_at_each_threshold():
    rng = np.random.default_rng(1)
    residuals = rng.uniform(0, 2, 400)
    in_range = rng.uniform(size=400) < 0.8
    curve = validity_curve(residuals, 0.5, in_range)
    multipliers = np.asarray(curve["multipliers"])
    assert multipliers[0] == pytest.approx(0.25) and multipliers[-1] == pytest.approx(4.0)
    assert multipliers[curve["operating_index"]] == 1.0
    for t, fraction, low, high in zip(curve["thresholds"], curve["fraction"], curve["low"], curve["high"]):
        reference = valid_fraction((residuals <= t) & in_range)
        assert (fraction, low, high) == (reference["fraction"], reference["low"], reference["high"])
    assert np.all(np.diff(curve["fraction"]) >= 0)
    assert curve["fraction"][-1] == pytest.approx(in_range.mean())  # 4 x 0.5 covers every residual
    assert curve["at_operating_point"]["fraction"] == pytest.approx(((residuals <= 0.5) & in_range).mean())
    json.dumps(curve, allow_nan=False)


def test_threshold_multipliers_always_hold_the_operating_point():
    np.testing.assert_allclose(threshold_multipliers(0.5, 2.0, 3), [0.5, 1.0, 2.0])
    assert 1.0 in threshold_multipliers(0.3, 3.0, 4)
    with pytest.raises(AtlasError, match="0 < low <= 1 <= high"):
        threshold_multipliers(1.5, 2.0)


def test_rank_comparison_of_identical_samples_is_a_coin_toss():
    values = np.random.default_rng(2).normal(size=200)
    same = rank_comparison(values, values)
    assert same["auc"] == 0.5 and same["p_value"] == pytest.approx(1.0)
    assert same["auc_low"] < 0.5 < same["auc_high"]


def test_rank_comparison_matches_scipy_and_the_null_variance():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=600), rng.normal(size=400)
    result = rank_comparison(a, b)
    direct = mannwhitneyu(a, b, alternative="two-sided")
    assert result["u"] == direct.statistic and result["p_value"] == pytest.approx(direct.pvalue, rel=1e-12)
    assert result["auc"] == pytest.approx(direct.statistic / (600 * 400))
    # Under H0 with continuous data, Var(AUC) = (n_a + n_b + 1) / (12 n_a n_b) exactly.
    assert result["standard_error"] == pytest.approx(np.sqrt(1001 / (12 * 600 * 400)), rel=0.1)
    assert result["auc_low"] < 0.5 < result["auc_high"]


def test_rank_comparison_of_shifted_samples_is_near_one_and_matches_a_bootstrap():
    rng = np.random.default_rng(4)
    far = rank_comparison(rng.normal(4.0, 1.0, 100), rng.normal(0.0, 1.0, 100))
    assert far["auc"] > 0.99 and far["auc_low"] > 0.95 and far["p_value"] < 1e-20
    apart = rank_comparison(np.full(30, 2.0), np.ones(20), method="bootstrap")  # perfect separation
    assert apart["auc"] == apart["auc_low"] == apart["auc_high"] == 1.0
    a, b = rng.normal(0.5, 1.0, 150), rng.normal(0.0, 1.0, 150)
    delong = rank_comparison(a, b)
    boot = rank_comparison(a, b, method="bootstrap", n_resamples=800, rng=5)
    assert boot["auc"] == delong["auc"]
    assert boot["auc_low"] == pytest.approx(delong["auc_low"], abs=0.02)
    assert boot["auc_high"] == pytest.approx(delong["auc_high"], abs=0.02)
    assert boot["standard_error"] == pytest.approx(delong["standard_error"], rel=0.15)
    z = norm.ppf(0.975)
    assert delong["auc_low"] < delong["auc"] - 0.9 * z * delong["standard_error"]  # a real interval, not a point


def test_delong_placements_count_ties_as_half():
    a, b = np.array([1.0, 2.0, 2.0, 5.0]), np.array([2.0, 3.0, 0.0])
    placements_a, placements_b = delong_placements(a, b)
    wins = (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])  # (4, 3)
    np.testing.assert_allclose(placements_a, wins.mean(axis=1))
    np.testing.assert_allclose(placements_b, wins.mean(axis=0))
    assert rank_comparison(a, b)["auc"] == pytest.approx(wins.mean())


def test_proportion_difference_is_statsmodels_agresti_caffo():
    result = proportion_difference(270, 300, 240, 300)
    direct = two_proportion_test(270, 300, 240, 300, method="agresti-caffo")
    low, high = confint_proportions_2indep(270, 300, 240, 300, method="agresti-caffo")
    assert result["p_value"] == pytest.approx(direct.pvalue) and result["difference"] == pytest.approx(0.1)
    assert (result["low"], result["high"]) == pytest.approx((low, high))
    everything = proportion_difference(300, 300, 300, 300)  # defined at 100 %, where the score method fails
    assert everything["p_value"] == pytest.approx(1.0) and everything["low"] < 0 < everything["high"]


def test_equivalence_of_identical_and_of_shifted_proportions():
    same = equivalence_proportions(900, 1000, 900, 1000, margin=0.05)
    direct = tost_proportions_2indep(900, 1000, 900, 1000, -0.05, 0.05, method="agresti-caffo")
    assert same["equivalent"] and same["p_value"] == pytest.approx(direct.pvalue)
    low, high = same["interval_1_minus_2alpha"]
    assert -0.05 < low < 0 < high < 0.05
    shifted = equivalence_proportions(900, 1000, 600, 1000, margin=0.05)
    assert not shifted["equivalent"] and shifted["p_value"] > 0.5
    assert not equivalence_proportions(9, 10, 9, 10, margin=0.05)["equivalent"]  # too few to show anything
    with pytest.raises(AtlasError, match="margin"):
        equivalence_proportions(9, 10, 9, 10, margin=0.0)


def test_minimum_detectable_difference_has_the_stated_power():
    mdd = minimum_detectable_difference(300, 300, baseline=0.5)
    h = mdd["cohens_h"]
    assert NormalIndPower().power(h, 300, 0.05, ratio=1.0) == pytest.approx(0.8, abs=1e-6)
    assert h == pytest.approx((norm.ppf(0.975) + norm.ppf(0.8)) * np.sqrt(2 / 300), rel=1e-3)
    assert 2 * np.arcsin(np.sqrt(0.5 + mdd["up"])) - 2 * np.arcsin(np.sqrt(0.5)) == pytest.approx(h)
    assert mdd["up"] == pytest.approx(mdd["down"]) == pytest.approx(mdd["mdd"])  # symmetric at one half
    near_one = minimum_detectable_difference(300, 300, baseline=1.0)
    assert near_one["up"] is None and near_one["mdd"] == near_one["down"] > 0
    assert minimum_detectable_difference(3000, 3000, 0.5)["mdd"] < 0.4 * mdd["mdd"]


def test_difference_verdict_reaches_each_of_its_three_answers():
    better = difference_verdict(booleans(290, 300), booleans(200, 300), names=("VAE", "AE"))
    assert better["kind"] == "a_greater" and better["verdict"] == "VAE > AE"
    worse = difference_verdict(booleans(200, 300), booleans(290, 300), names=("VAE", "AE"))
    assert worse["kind"] == "b_greater" and worse["verdict"] == "AE > VAE"
    same = difference_verdict(booleans(1800, 2000), booleans(1800, 2000), margin=0.05)
    assert same["kind"] == "equivalent" and same["verdict"] == "equivalent within ±0.05"
    few = difference_verdict(booleans(27, 30), booleans(26, 30), margin=0.05)
    assert few["kind"] == "not_detected"
    assert few["verdict"].startswith("not detected at n = 30 / 30, MDD ")
    assert few["minimum_detectable"]["mdd"] > 0.1
    json.dumps(few, allow_nan=False)
    with pytest.raises(AtlasError, match="boolean"):
        difference_verdict(np.ones(3), booleans(2, 3))


def test_paired_difference_verdict_matches_scipy_and_statsmodels():
    rng = np.random.default_rng(6)
    base = rng.uniform(0.6, 0.9, 8)
    improved = base + 0.1 + rng.normal(0, 0.01, 8)
    better = paired_difference_verdict(improved, base, margin=0.02)
    assert better["kind"] == "a_greater" and better["verdict"] == "A > B"
    assert better["p_value"] == pytest.approx(ttest_rel(improved, base).pvalue)
    assert paired_difference_verdict(base, improved, margin=0.02)["kind"] == "b_greater"
    noise = rng.normal(0, 0.002, 10)
    same = paired_difference_verdict(base[:5].repeat(2) + noise, base[:5].repeat(2), margin=0.02)
    assert same["kind"] == "equivalent"
    assert same["tost_p_value"] == pytest.approx(ttost_paired(base[:5].repeat(2) + noise, base[:5].repeat(2),
                                                              -0.02, 0.02)[0])
    assert same["p_value"] == pytest.approx(ttest_rel(base[:5].repeat(2) + noise, base[:5].repeat(2)).pvalue)
    unsure = paired_difference_verdict(np.array([0.9, 0.7, 0.8]), np.array([0.8, 0.8, 0.8]), margin=0.02)
    assert unsure["kind"] == "not_detected" and "3 pairs" in unsure["verdict"]
    d_z = unsure["mdd"] / unsure["sd_difference"]
    assert TTestPower().power(d_z, 3, 0.05) == pytest.approx(0.8, abs=1e-6)
    constant = paired_difference_verdict(np.array([1.0, 1.0]), np.array([1.0, 1.0]), margin=0.02)
    assert constant["kind"] == "constant" and constant["p_value"] is None
    with pytest.raises(AtlasError, match="length >= 2"):
        paired_difference_verdict(np.array([1.0]), np.array([1.0]), margin=0.1)


def test_conclusion_stability_sees_a_reversal_inside_the_band():
    a = np.full(200, 0.9)  # all valid from 0.9 x the operating point on
    b = np.r_[np.full(120, 0.6), np.full(80, 5.0)]  # 60 % valid from 0.6 x on, the rest never
    result = conclusion_stability(a, b, operating_point=1.0, band=(0.5, 2.0), n_thresholds=9, names=("AE", "VAE"))
    rows = {round(row["threshold"], 4): row for row in result["thresholds"]}
    assert rows[0.5]["sign"] == 0
    assert rows[round(2 ** -0.5, 4)]["sign"] == -1 and rows[round(2 ** -0.5, 4)]["significant"]
    assert rows[1.0]["sign"] == 1 and rows[1.0]["difference"] == pytest.approx(0.4)
    with np.errstate(divide="ignore"):  # statsmodels divides by 1 - 1 on the way to its odds ratio
        direct = two_proportion_test(200, 200, 120, 200, method="agresti-caffo")
    assert rows[1.0]["p_value"] == pytest.approx(direct.pvalue)
    assert result["flips"] and result["significant_flip"] and "reverses" in result["statement"]


def test_conclusion_stability_of_a_clear_ordering_holds_across_the_band():
    rng = np.random.default_rng(7)
    result = conclusion_stability(rng.uniform(0, 1, 300), rng.uniform(0.5, 3, 300), operating_point=1.0)
    assert not result["flips"] and result["n_significant"] == len(result["thresholds"])
    assert result["statement"].startswith("A > B at every threshold")
    with pytest.raises(AtlasError, match="in_range_a"):
        conclusion_stability(np.ones(3), np.ones(3), 1.0, in_range_a=np.ones(2, dtype=bool))


def test_compare_validity_bundles_everything_as_json():
    rng = np.random.default_rng(8)
    a, b = rng.lognormal(-2.0, 0.5, 120), rng.lognormal(-1.5, 0.5, 100)
    in_b = rng.uniform(size=100) < 0.9
    result = compare_validity(a, b, operating_point=0.2, in_range_b=in_b, names=("VAE", "AE"))
    assert set(result) == {"names", "operating_point", "ecdf", "threshold_curves", "rank", "stability", "verdict"}
    assert 0.2 in result["ecdf"]["grid"]
    assert result["rank"]["auc"] < 0.5  # the VAE's residuals are smaller
    assert result["verdict"]["difference"]["fraction_b"] == pytest.approx(((b <= 0.2) & in_b).mean())
    assert result["threshold_curves"]["AE"]["n_in_range"] == int(in_b.sum())
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: rank_comparison(np.array([]), np.ones(3)), "non-empty"),
        (lambda: rank_comparison(np.ones(3), np.ones(3), method="hanley"), "method"),
        (lambda: validity_curve(np.ones(3), 0.0), "operating_point"),
        (lambda: validity_curve(np.ones(3), 1.0, in_range=np.ones(3)), "boolean"),
        (lambda: proportion_difference(5, 4, 1, 4), "counts"),
        (lambda: proportion_difference(1, 4, 1, 4, alpha=0.7), "alpha"),
        (lambda: difference_verdict(booleans(1, 3), booleans(1, 3), names=("A", "A")), "names"),
        (lambda: minimum_detectable_difference(10, 10, baseline=1.5), "baseline"),
    ],
)
def test_bad_input_raises_atlas_error(call, message):
    with pytest.raises(AtlasError, match=message):
        call()


def test_adjust_family_matches_holm_and_redecides():
    from statsmodels.stats.multitest import multipletests

    from latent_atlas.analysis.evidence import adjust_family

    base = np.array([0.50, 0.60, 0.55, 0.58])
    verdicts = [paired_difference_verdict(base + shift, base, margin=0.001) for shift in
                (np.array([0.050, 0.052, 0.049, 0.051]), np.array([0.014, 0.028, 0.006, 0.02]),  # p 5e-6, 0.035
                 np.array([0.015, 0.03, 0.005, 0.02]))]  # p 0.044: Holm makes both 0.071
    verdicts.append(paired_difference_verdict(base + 0.25, base, margin=0.001))  # constant: no test
    raw = [v["p_value"] for v in verdicts[:3]]
    adjusted = adjust_family(verdicts, "example")
    expected = multipletests(raw, method="holm")[1]
    assert [v["p_adjusted"] for v in adjusted[:3]] == pytest.approx(list(expected))
    assert [v["tost_p_adjusted"] for v in adjusted[:3]] == pytest.approx(
        list(multipletests([v["tost_p_value"] for v in verdicts[:3]], method="holm")[1]))
    assert all(v["family_size"] == 3 and v["family"] == "example" for v in adjusted[:3])
    assert adjusted[3] == verdicts[3] and adjusted[3]["kind"] == "constant"
    for before, after, p in zip(verdicts, adjusted, expected):
        assert before["kind"] == ("a_greater" if before["p_value"] < 0.05 else "not_detected")
        assert after["kind"] == ("a_greater" if p < 0.05 else "not_detected")
        assert "Holm" in after["statement"]
    assert any(v["kind"] == "a_greater" for v in verdicts[1:3]) and any(
        v["kind"] == "not_detected" for v in adjusted[1:3])  # adjustment changed a decision


def test_stability_over_seeds_tests_each_threshold_over_seeds():
    from latent_atlas.analysis.evidence import stability_over_seeds

    a = np.array([[0.50, 0.70, 0.90], [0.55, 0.72, 0.93], [0.48, 0.69, 0.88]])  # (seeds, thresholds)
    b = np.array([[0.60, 0.65, 0.80], [0.62, 0.66, 0.84], [0.57, 0.66, 0.79]])
    result = stability_over_seeds(a, b, np.array([0.02, 0.04, 0.08]), names=("VAE", "AE"))
    for t, row in enumerate(result["thresholds"]):
        assert row["p_value"] == pytest.approx(ttest_rel(a[:, t], b[:, t]).pvalue)
        assert row["difference"] == pytest.approx((a[:, t] - b[:, t]).mean())
        assert row["seeds_agreeing"] == 3
    assert [row["sign"] for row in result["thresholds"]] == [-1, 1, 1]
    assert result["flips"] and result["unanimous"] == 3 and result["n_seeds"] == 3
    assert result["significant_flip"] == all(row["significant"] for row in result["thresholds"][:2])
    with pytest.raises(AtlasError, match="valid fractions"):
        stability_over_seeds(a, b[:2], np.array([0.02, 0.04, 0.08]))


def test_stability_over_seeds_gives_no_sign_to_a_difference_of_rounding():
    from latent_atlas.analysis.evidence import stability_over_seeds

    a, b = np.array([[12 / 12], [10 / 12]]), np.array([[11 / 12], [11 / 12]])  # equal means, 5.6e-17 apart
    assert (a - b).mean() != 0
    row = stability_over_seeds(a, b, np.array([0.04]))["thresholds"][0]
    assert row["sign"] == 0 and row["seeds_agreeing"] == 0
