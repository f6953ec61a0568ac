"""The corruption benchmark: physics of each corruption, determinism, labels, the rule and its ROC numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, multivariate_t
from sklearn.metrics import roc_auc_score, roc_curve

from latent_atlas import corruptions
from latent_atlas.config import DataConfig
from latent_atlas.corruptions import (
    CANDIDATES,
    KINDS,
    choose_threshold,
    corrupt,
    evaluate,
    kinds_for,
    make_benchmark,
    shape_residuals,
    shape_threshold_for,
)
from latent_atlas.data import render_heatmaps
from latent_atlas.errors import AtlasError

from .conftest import tiny_data_config

AXIS = np.linspace(-3.0, 3.0, 36)
FACTORS = np.array([[0.3, 1.2, 0.4], [2.0, 0.5, -0.7], [1.0, 1.0, 0.0]])
CLEAN = render_heatmaps(*FACTORS.T, AXIS).astype(np.float64)


def rng() -> np.random.Generator:
    return np.random.default_rng(5)


@pytest.mark.parametrize(("kind", "severity", "expected"), [
    ("amplitude", 0.7, 0.7 * CLEAN),
    ("offset", 0.05, 0.05 + 0.95 * CLEAN),
    ("clip", 0.6, np.minimum(CLEAN, 0.6) / 0.6),
    ("shift", 0.0, CLEAN),
    ("two_blobs", 0.0, CLEAN),
    ("ring", 0.0, CLEAN),
    ("square", 2.0, CLEAN),
    ("cross", 2.0, CLEAN),
    ("blend", 0.0, CLEAN),
    ("blur", 0.0, CLEAN),
    ("extra_blob", 0.0, CLEAN),
])
def test_each_corruption_reduces_to_a_known_image(kind, severity, expected):
    np.testing.assert_allclose(corrupt(kind, severity, FACTORS, AXIS, rng()), expected, atol=1e-6)


def test_heavy_tails_are_scipy_student_t_densities():
    image = corrupt("heavy_tail", 5.0, FACTORS[:1], AXIS, rng())[0]
    var_x, var_y, rho = FACTORS[0]
    cov = [[var_x, rho * np.sqrt(var_x * var_y)], [rho * np.sqrt(var_x * var_y), var_y]]
    x, y = np.meshgrid(AXIS, AXIS)
    density = multivariate_t([0, 0], cov, df=5.0).pdf(np.stack([x.ravel(), y.ravel()], axis=1)).reshape(36, 36)
    np.testing.assert_allclose(image, density / density.max(), atol=1e-6)


def test_a_shift_moves_the_centre_by_its_severity_in_sd_along_the_shift():
    factors = np.array([[0.2, 0.2, 0.0], [0.1, 0.4, 0.5]])
    for severity in (0.5, 2.0):
        images = corrupt("shift", severity, factors, AXIS, rng())
        x, y = np.meshgrid(AXIS, AXIS)
        mass = images.sum(axis=(1, 2))
        centre = np.stack([(images * x).sum(axis=(1, 2)), (images * y).sum(axis=(1, 2))], axis=1) / mass[:, None]
        for n, (var_x, var_y, rho) in enumerate(factors):
            direction = centre[n] / np.linalg.norm(centre[n])
            cov = np.array([[var_x, rho * np.sqrt(var_x * var_y)], [rho * np.sqrt(var_x * var_y), var_y]])
            sd = np.sqrt(direction @ cov @ direction)
            assert np.linalg.norm(centre[n]) / sd == pytest.approx(severity, rel=0.01)


def test_noise_and_blur_have_the_stated_size():
    noisy = corrupt("noise", 0.05, np.tile(FACTORS, (30, 1)), AXIS, rng())
    assert np.std(noisy - np.tile(CLEAN, (30, 1, 1))) == pytest.approx(0.05, rel=0.01)
    round_blob = np.array([[1.0, 1.0, 0.0]])
    blurred = corrupt("blur", 0.5, round_blob, AXIS, rng())[0]
    # Gaussian * Gaussian: variance 1 + 0.5^2 per axis, so the peak drops to 1 / 1.25 (the grid lacks the origin: ~)
    assert blurred.max() == pytest.approx(1 / 1.25, rel=0.01)


def test_benchmark_is_deterministic_for_a_seed_and_labelled_per_kind_and_grade():
    config = tiny_data_config()
    a = make_benchmark(config, np.random.default_rng(3), n_per_cell=2)
    b = make_benchmark(config, np.random.default_rng(3), n_per_cell=2)
    c = make_benchmark(config, np.random.default_rng(4), n_per_cell=2)
    for field in ("images", "kind", "grade", "severity", "label", "factors"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.images, c.images)
    assert len(a) == 2 * (1 + sum(len(kind.severities) for kind in KINDS))
    assert a.images.shape[1:] == (12, 12) and np.all(np.isfinite(a.images))
    for kind in KINDS:
        for grade, severity in enumerate(kind.severities, start=1):
            rows = (a.kind == kind.name) & (a.grade == grade)
            assert rows.sum() == 2 and np.all(a.severity[rows] == severity)
            assert np.all(a.label[rows] == (grade > kind.n_benign))
    assert not a.label[a.kind == "clean"].any()
    # clean factors lie in the data's box; clean images are exact heatmaps of them
    assert np.all((a.factors[:, 0] >= 0.3) & (a.factors[:, 0] <= 2.5) & (a.factors[:, 2] >= -0.6) & (a.factors[:, 2] <= 0.7))
    clean = a.kind == "clean"
    np.testing.assert_allclose(a.images[clean], render_heatmaps(*a.factors[clean].T, a.axis), atol=1e-7)


def test_student_t_benchmark_skips_heavy_tails_and_draws_df_by_the_data_rule():
    assert "heavy_tail" not in [kind.name for kind in kinds_for("student_t")]
    benchmark = make_benchmark(tiny_data_config(kind="student_t"), np.random.default_rng(0), n_per_cell=4)
    assert "heavy_tail" not in set(benchmark.kind.tolist())
    assert set(np.unique(benchmark.factors[:, 3])) <= {2.0, 200.0}
    # one child generator per kind: the kinds both families share get the same images
    gaussian = make_benchmark(tiny_data_config(), np.random.default_rng(0), n_per_cell=4)
    assert np.array_equal(gaussian.factors[gaussian.kind == "ring", :3], benchmark.factors[benchmark.kind == "ring", :3])


def test_choose_threshold_maximises_youden_j_with_ties_to_the_larger_candidate():
    negatives, positives = [0.01, 0.02, 0.03], [0.05, 0.06, 0.2]
    scores = np.array(negatives + positives)
    labels = np.array([False] * 3 + [True] * 3)
    # J = 1 at 0.03 and at 0.04 (0.03 is not flagged: flagged means > threshold); the larger wins
    assert choose_threshold(scores, labels, candidates=(0.01, 0.03, 0.04, 0.05, 0.1)) == 0.04
    # overlap: J = 1/3, 2/3, 1/3, 2/3, 1/3 at these candidates; the tie (exact, not float noise) -> 0.055
    overlapping = np.array([0.01, 0.02, 0.05, 0.03, 0.06, 0.2])
    assert choose_threshold(overlapping, labels, candidates=(0.015, 0.025, 0.045, 0.055, 0.1)) == 0.055
    assert choose_threshold(overlapping, labels, candidates=(0.015, 0.025, 0.045)) == 0.025


def test_choose_threshold_rejects_bad_input():
    with pytest.raises(AtlasError, match="both"):
        choose_threshold(np.array([0.1, 0.2]), np.array([True, True]))
    with pytest.raises(AtlasError, match="one length"):
        choose_threshold(np.array([0.1, 0.2]), np.array([True]))
    with pytest.raises(AtlasError, match="NaN"):
        choose_threshold(np.array([np.nan, 0.2]), np.array([True, False]))


def test_candidates_are_round_and_ascending():
    assert list(CANDIDATES) == sorted(CANDIDATES) and CANDIDATES[0] == 0.001 and CANDIDATES[-1] == 1.0
    assert 0.04 in CANDIDATES and 0.0355 in CANDIDATES and len(set(CANDIDATES)) == len(CANDIDATES)


@pytest.fixture(scope="module")
def tiny_scored():
    benchmark = make_benchmark(tiny_data_config(), np.random.default_rng(1), n_per_cell=6)
    return benchmark, shape_residuals(benchmark)


def test_evaluate_matches_scikit_learn_and_mann_whitney(tiny_scored):
    benchmark, scores = tiny_scored
    threshold = choose_threshold(scores, benchmark.label)
    report = evaluate(benchmark, scores, threshold)
    assert report["auc"]["pooled"] == pytest.approx(roc_auc_score(benchmark.label, scores))
    fpr, tpr, _ = roc_curve(benchmark.label, scores)
    np.testing.assert_allclose(report["roc"]["pooled"]["fpr"], fpr)
    np.testing.assert_allclose(report["roc"]["pooled"]["tpr"], tpr)
    negatives = scores[~benchmark.label]
    for kind in ("ring", "noise"):
        positives = scores[(benchmark.kind == kind) & benchmark.label]
        u = mannwhitneyu(positives, negatives).statistic  # AUC = U / (n1 n0), an independent reference
        assert report["auc"][kind] == pytest.approx(u / (len(positives) * len(negatives)))
    for cell in report["cells"]:
        rows = (benchmark.kind == cell["kind"]) & (benchmark.grade == cell["grade"])
        assert cell["n"] == 6 and cell["detected"] == pytest.approx(np.mean(scores[rows] > threshold))
        assert cell["label"] == ("clean" if cell["kind"] == "clean" else "corrupt" if benchmark.label[rows][0] else "benign")
    point = report["operating_point"]
    assert point["tpr"] == pytest.approx(np.mean(scores[benchmark.label] > threshold))
    assert point["fpr"] == pytest.approx(np.mean(negatives > threshold))
    assert threshold in CANDIDATES and report["threshold"] == threshold


def test_clean_images_have_tiny_shape_residuals_and_severe_grades_large_ones(tiny_scored):
    benchmark, scores = tiny_scored
    assert scores[benchmark.kind == "clean"].max() < 1e-5
    for kind in ("ring", "two_blobs", "noise", "shift", "amplitude", "cross"):
        worst = (benchmark.kind == kind) & (benchmark.grade == benchmark.grade[benchmark.kind == kind].max())
        assert scores[worst].min() > 0.05, kind


def test_shape_threshold_for_is_deterministic_and_cached(monkeypatch):
    config = tiny_data_config()
    first = shape_threshold_for(config)
    assert first in CANDIDATES
    corruptions._cached_threshold.cache_clear()
    assert shape_threshold_for(config) == first  # recomputed from scratch: the same answer
    # fields the benchmark does not read (seed, split, sampling) share the answer without recomputing
    monkeypatch.setattr(corruptions, "make_benchmark", None)
    assert shape_threshold_for(tiny_data_config(seed=9, test_fraction=0.5)) == first


def test_default_grid_threshold_is_the_documented_one():
    assert shape_threshold_for(DataConfig()) == 0.04


def test_bad_benchmark_arguments_raise():
    with pytest.raises(AtlasError, match="unknown corruption kind"):
        corrupt("smudge", 1.0, FACTORS, AXIS, rng())
    with pytest.raises(AtlasError, match="Generator"):
        make_benchmark(tiny_data_config(), 0)
    with pytest.raises(AtlasError, match="at least one image"):
        make_benchmark(tiny_data_config(), rng(), n_per_cell=0)


@pytest.mark.slow
def test_default_student_t_grid_threshold_is_the_documented_one():
    assert shape_threshold_for(DataConfig(kind="student_t")) == 0.0355
