"""Cross-run aggregates on small hand-made run folders: the training seed is the unit, families are adjusted."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import kendalltau, ttest_rel
from statsmodels.stats.multitest import multipletests

from latent_atlas.graph import TaskContext
from latent_atlas.io import write_json, write_npz
from latent_atlas.study.aggregates import (
    Quantity,
    compare_models,
    curves_over_setting,
    level_trend,
    validity_evidence,
)
from latent_atlas.study.quantities import EVIDENCE_MARGINS, RECONSTRUCTION

THRESHOLD = 0.04


def _runs(seeds, models=("vae", "ae")):
    return [{"model": model, "seed": seed, "run_dir": f"runs/{model}-s{seed}"} for model in models for seed in seeds]


def _context(root, params):
    return TaskContext(root=root, task_id="aggregate-test", params=params, input_ids={})


def _evaluation(root, run_dir, residuals, in_range=None):
    residuals = np.asarray(residuals, dtype=float)
    in_range = np.ones(residuals.size, bool) if in_range is None else np.asarray(in_range)
    (root / run_dir).mkdir(parents=True, exist_ok=True)
    write_npz(root / run_dir / "evaluation.npz", {"verdict_shape_residual": residuals, "verdict_in_range": in_range})


def _images_with_valid_fraction(fraction, n=2000):
    """Residuals of which ``fraction`` lie below the threshold at every multiple in 0.5x-2x (so the band check is
    decided by the same fractions)."""
    k = round(fraction * n)
    return np.r_[np.full(k, 0.1 * THRESHOLD), np.full(n - k, 10 * THRESHOLD)]


def test_validity_evidence_takes_seeds_as_the_unit_not_pooled_images(tmp_path):
    # Seed by seed the VAE is ahead twice and behind once: pooled over 6,000 images per model, the difference
    # of 0.02 would be "significant" (two-proportion z about 2.4); over three seeds it is not.
    fractions = {"vae": {0: 0.90, 1: 0.92, 2: 0.84}, "ae": {0: 0.86, 1: 0.88, 2: 0.86}}
    for model, per_seed in fractions.items():
        for seed, fraction in per_seed.items():
            _evaluation(tmp_path, f"runs/{model}-s{seed}", _images_with_valid_fraction(fraction))
    write_json(tmp_path / "oracle.json", {"shape_threshold": THRESHOLD})
    validity_evidence(_context(tmp_path, {"runs": _runs([0, 1, 2]), "models": ["vae", "ae"], "oracle": "oracle.json",
                                          "band": [0.5, 2.0], "margins": EVIDENCE_MARGINS,
                                          "path": "evidence.json"}))
    entry = json.loads((tmp_path / "evidence.json").read_text())["comparisons"]["reconstructions"]
    vae, ae = np.array(list(fractions["vae"].values())), np.array(list(fractions["ae"].values()))
    verdict = entry["paired"]["verdict"]
    assert entry["seeds"] == [0, 1, 2] and entry["n_images"]["VAE"] == [2000] * 3
    assert verdict["p_value"] == pytest.approx(ttest_rel(vae, ae).pvalue)
    assert verdict["kind"] == "not_detected" and "p_adjusted" not in verdict  # a sensitivity check, unadjusted
    stability = entry["stability"]
    assert stability["n_seeds"] == 3 and len(stability["thresholds"]) == 9
    for row in stability["thresholds"]:
        assert row["difference"] == pytest.approx((vae - ae).mean())
        assert row["seeds_agreeing"] == 2 and not row["significant"]
    assert stability["unanimous"] == 0 and "agrees in sign at 0 of 9" in stability["statement"]
    assert entry["auc_over_seeds"]["n"] == 3


def test_evidence_margins_are_those_of_the_quantities_they_check(tmp_path):
    from latent_atlas.study import study_config_from
    from latent_atlas.study.aggregates import VALIDITY_SOURCES
    from latent_atlas.study.pipeline import study_graph

    assert set(EVIDENCE_MARGINS) == set(VALIDITY_SOURCES)
    assert EVIDENCE_MARGINS["reconstructions"] == next(q.margin for q in RECONSTRUCTION
                                                       if q.name == "reconstructions_valid")
    evidence = study_graph(study_config_from({})).aggregates["evidence-gaussian"]
    assert evidence.params["margins"] == EVIDENCE_MARGINS
    for row in (0, 1):
        _evaluation(tmp_path, f"runs/vae-s{row}", np.full(10, 0.1 * THRESHOLD))
        _evaluation(tmp_path, f"runs/ae-s{row}", np.full(10, 0.1 * THRESHOLD))
    write_json(tmp_path / "oracle.json", {"shape_threshold": THRESHOLD})
    margins = {**EVIDENCE_MARGINS, "reconstructions": 0.123}
    validity_evidence(_context(tmp_path, {"runs": _runs([0, 1]), "models": ["vae", "ae"], "oracle": "oracle.json",
                                          "band": [0.5, 2.0], "margins": margins, "path": "evidence.json"}))
    assert json.loads((tmp_path / "evidence.json").read_text())["comparisons"]["reconstructions"]["margin"] == 0.123


def test_validity_evidence_counts_the_range_check_and_every_threshold(tmp_path):
    residuals = np.linspace(0.01, 0.09, 9) * THRESHOLD / 0.04  # one image at each 0.25x ... 2.25x
    for seed in (0, 1):
        _evaluation(tmp_path, f"runs/vae-s{seed}", residuals, in_range=np.arange(9) != 0)  # the best one out of range
        _evaluation(tmp_path, f"runs/ae-s{seed}", residuals)
    write_json(tmp_path / "oracle.json", {"shape_threshold": THRESHOLD})
    validity_evidence(_context(tmp_path, {"runs": _runs([0, 1]), "models": ["vae", "ae"], "oracle": "oracle.json",
                                          "band": [0.5, 2.0], "margins": EVIDENCE_MARGINS,
                                          "path": "evidence.json"}))
    rows = json.loads((tmp_path / "evidence.json").read_text())["comparisons"]["reconstructions"]["stability"]
    for row in rows["thresholds"]:
        expected_vae = np.mean((residuals <= row["threshold"]) & (np.arange(9) != 0))
        assert row["fraction_a"] == pytest.approx(expected_vae)
        assert row["sign"] == -1 and row["seeds_agreeing"] == 2  # the AE is ahead by the out-of-range image
        assert row["p_value"] is None  # the same difference at both seeds: no test


def _metrics(root, run_dir, **values):
    (root / run_dir).mkdir(parents=True, exist_ok=True)
    write_json(root / run_dir / "metrics.json", values)


def test_compare_models_decides_on_p_values_holm_adjusted_within_a_family(tmp_path):
    base = np.array([0.50, 0.60, 0.55, 0.58])
    shifts = {"clear": np.array([0.050, 0.052, 0.049, 0.051]),  # paired t p 5e-6
              "borderline": np.array([0.014, 0.028, 0.006, 0.02]),  # p 0.035
              "other": np.array([0.015, 0.03, 0.005, 0.02]),  # p 0.044
              "alone": np.array([0.014, 0.028, 0.006, 0.02])}  # the borderline's numbers, in a family of its own
    for seed in range(4):
        _metrics(tmp_path, f"runs/ae-s{seed}", **{name: float(base[seed]) for name in shifts})
        _metrics(tmp_path, f"runs/vae-s{seed}", **{name: float(base[seed] + shift[seed]) for name, shift in shifts.items()})
    quantities = [Quantity(name, name, "metrics", name, 0.001, "lower", "error" if name != "alone" else "")
                  for name in shifts]
    compare_models(_context(tmp_path, {"runs": _runs(range(4)), "models": ["vae", "ae"],
                                       "quantities": [q.__dict__ for q in quantities], "path": "compare.json"}))
    out = json.loads((tmp_path / "compare.json").read_text())["quantities"]
    raw = {name: ttest_rel(base + shift, base).pvalue for name, shift in shifts.items()}
    family = multipletests([raw["clear"], raw["borderline"], raw["other"]], method="holm")[1]
    verdicts = {name: out[name]["paired"]["verdict"] for name in shifts}
    assert [verdicts[name]["p_adjusted"] for name in ("clear", "borderline", "other")] == pytest.approx(list(family))
    assert verdicts["alone"]["p_adjusted"] == pytest.approx(raw["alone"]) and verdicts["alone"]["family_size"] == 1
    assert verdicts["borderline"]["family"] == "error" and verdicts["alone"]["family"] == "alone"
    assert raw["borderline"] == pytest.approx(raw["alone"]) and raw["borderline"] < 0.05
    assert verdicts["clear"]["kind"] == "a_greater"
    assert verdicts["borderline"]["kind"] == verdicts["other"]["kind"] == "not_detected"  # Holm: 0.071 each
    assert verdicts["alone"]["kind"] == "a_greater"  # the same numbers asked once


def test_level_trend_is_kendalls_tau_over_the_runs_from_the_chosen_level():
    curve = [{"level": level, "per_seed": {"0": value, "1": value - 0.01}}
             for level, value in ((2, 0.3), (3, 0.62), (4, 0.6), (8, 0.55), (16, 0.4))]
    trend = level_trend(curve, trend_from=3)
    levels = [3, 3, 4, 4, 8, 8, 16, 16]
    values = [0.62, 0.61, 0.6, 0.59, 0.55, 0.54, 0.4, 0.39]
    expected = kendalltau(levels, values)
    assert trend["levels"] == [3, 4, 8, 16] and trend["n_runs"] == 8
    assert (trend["tau"], trend["p_value"]) == pytest.approx((expected.statistic, expected.pvalue))
    assert trend["tau"] < 0
    assert level_trend(curve)["n_runs"] == 10  # every level
    assert level_trend(curve[:1])["tau"] is None  # one level: no trend to test


def test_curves_over_setting_write_the_trend(tmp_path):
    runs = []
    for level in (3, 4, 8):
        for seed in (0, 1):
            run_dir = f"runs/vae-d{level}-s{seed}"
            _metrics(tmp_path, run_dir, value=float(level + seed))
            runs.append({"model": "vae", "seed": seed, "run_dir": run_dir, "settings": {"model.latent_dim": level}})
    curves_over_setting(_context(tmp_path, {"runs": runs, "setting": "model.latent_dim", "trend_from": 3,
                                            "quantities": [Quantity("value", "v", "metrics", "value", 0.1).__dict__],
                                            "path": "curves.json"}))
    trend = json.loads((tmp_path / "curves.json").read_text())["quantities"]["value"]["trend"]
    assert trend["tau"] > 0.5 and trend["p_value"] < 0.1 and trend["from"] == 3
