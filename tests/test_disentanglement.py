import json

import numpy as np
import pytest
import torch
from scipy.stats import entropy, spearmanr
from sklearn.metrics import mutual_info_score

from latent_atlas.analysis.disentanglement import (
    ROTATION_INVARIANCE,
    continuous_metrics,
    dci,
    dci_from_importance,
    discretize_factors,
    explicitness,
    factor_correlations,
    factorvae_score,
    histogram_discretize,
    interventional_batches,
    interventional_factorvae,
    lasso_alpha,
    mig_bin_sensitivity,
    mutual_information_gap,
    mutual_information_matrix,
    quantile_discretize,
    quantile_mig,
    uniform_box_sampler,
)
from latent_atlas.config import DataConfig
from latent_atlas.data.factors import sample_factors
from latent_atlas.data.heatmaps import grid_axis, render_from_factors
from latent_atlas.errors import AtlasError
from latent_atlas.models import build_model
from latent_atlas.models.inference import encode as model_encode

from .conftest import tiny_model_config

NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def grid_factors() -> np.ndarray:
    """Every combination of 5 x 6 x 7 levels, twice: independent, discrete factors."""
    levels = [np.arange(1.0, n + 1) for n in (5, 6, 7)]
    table = np.stack([m.ravel() for m in np.meshgrid(*levels, indexing="ij")], axis=1)
    return np.concatenate([table, table])


def monotone_codes(factors: np.ndarray) -> np.ndarray:
    """Each factor through its own increasing map, axes permuted: a perfectly disentangled code."""
    return np.column_stack([np.cbrt(factors[:, 2]), 3.0 * factors[:, 0] - 1.0, np.log(factors[:, 1])])


def test_mig_of_factor_codes_is_one(grid_factors):
    result = mutual_information_gap(monotone_codes(grid_factors), grid_factors, factor_names=NAMES)
    assert result["mig"] == pytest.approx(1.0, abs=1e-9)
    assert result["best_latent"] == {"a": 1, "b": 2, "c": 0}
    assert result["factor_entropy"]["c"] == pytest.approx(np.log(7))


def test_mig_of_random_codes_is_near_zero(grid_factors):
    factors = np.repeat(grid_factors, 20, axis=0)
    codes = np.random.default_rng(0).normal(size=(len(factors), 3))
    assert mutual_information_gap(codes, factors)["mig"] < 0.02


def test_mig_of_duplicated_and_mixed_codes_lies_between(grid_factors):
    codes = monotone_codes(grid_factors)
    duplicated = np.column_stack([codes, codes[:, 1]])  # factor a on two axes: its gap is 0
    result = mutual_information_gap(duplicated, grid_factors, factor_names=NAMES)
    assert result["gaps"]["a"] == pytest.approx(0.0, abs=1e-12)
    assert result["mig"] == pytest.approx(2 / 3, abs=1e-9)
    a, b = grid_factors[:, 0] / 5, grid_factors[:, 1] / 6
    even = np.column_stack([a + b, a - b, grid_factors[:, 2]])  # a and b rotated 45 degrees into each other
    assert mutual_information_gap(even, grid_factors)["mig"] == pytest.approx(1 / 3, abs=0.02)
    rng = np.random.default_rng(0)
    noisy = [mutual_information_gap(grid_factors + rng.normal(scale=s, size=grid_factors.shape), grid_factors)["mig"]
             for s in (0.2, 0.6)]
    assert 1.0 > noisy[0] > noisy[1] > 0.1


def test_mig_bins_continuous_factors():
    rng = np.random.default_rng(1)
    factors = rng.uniform(size=(4000, 2))
    assert np.unique(discretize_factors(factors, 20)[:, 0]).tolist() == list(range(1, 21))
    assert mutual_information_gap(factors ** 3, factors)["mig"] > 0.5
    assert mutual_information_gap(rng.normal(size=(4000, 2)), factors)["mig"] < 0.05


def test_histogram_discretize_uses_equal_width_bins():
    values = np.array([[0.0], [0.24], [0.26], [0.74], [1.0]])
    np.testing.assert_array_equal(histogram_discretize(values, 4)[:, 0], [1, 1, 2, 3, 4])
    with pytest.raises(AtlasError, match="two latent axes"):
        mutual_information_gap(values, values)


def test_factor_correlations_known_answers_and_spearman(grid_factors):
    table = factor_correlations(monotone_codes(grid_factors), grid_factors, NAMES)
    expected = np.zeros((3, 3))
    expected[[1, 2, 0], [0, 1, 2]] = 1.0
    np.testing.assert_allclose(table["abs_spearman"], expected, atol=1e-12)
    assert table["latent_names"] == ["z0", "z1", "z2"] and table["best_latent"] == {"a": 1, "b": 2, "c": 0}
    rng = np.random.default_rng(2)
    codes, factors = rng.normal(size=(80, 2)), rng.normal(size=(80, 3))
    codes[:, 1] += factors[:, 0]
    reference = np.abs(spearmanr(codes, factors).statistic[:2, 2:])
    np.testing.assert_allclose(factor_correlations(codes, factors, NAMES)["abs_spearman"], reference)


def test_factor_correlations_treat_a_constant_axis_as_uncorrelated(grid_factors):
    codes = np.column_stack([monotone_codes(grid_factors), np.ones(len(grid_factors))])
    table = factor_correlations(codes, grid_factors, NAMES)
    assert table["abs_spearman"][3] == [0.0, 0.0, 0.0]
    with pytest.raises(AtlasError, match="factor names"):
        factor_correlations(codes, grid_factors, ("a",))


# Continuous-factor metrics: quantile MIG, DCI, explicitness, FactorVAE.

N_UNIFORM, N_TRAIN = 2000, 1500
SPLIT = (np.arange(N_TRAIN), np.arange(N_TRAIN, N_UNIFORM))
ROTATE_AB = np.array([[np.cos(np.pi / 4), -np.sin(np.pi / 4), 0.0], [np.sin(np.pi / 4), np.cos(np.pi / 4), 0.0],
                      [0.0, 0.0, 1.0]])  # 45 degrees in the plane of the first two factors


@pytest.fixture(scope="module")
def uniform_factors() -> np.ndarray:
    """Independent continuous factors, uniform on [0, 1]^3."""
    return np.random.default_rng(10).uniform(size=(N_UNIFORM, 3))


@pytest.fixture(scope="module")
def real_grid() -> np.ndarray:
    """The default dataset's factor grid (var_x, var_y, rho): 25 x 25 x 19 rows, no images rendered."""
    return sample_factors(DataConfig(), np.random.default_rng(0))


def standardised(values: np.ndarray) -> np.ndarray:
    return (values - values.mean(axis=0)) / values.std(axis=0)


def random_codes(n: int, seed: int = 11) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3))


@pytest.fixture(scope="module")
def uniform_scores(uniform_factors) -> dict:
    """Every array metric on codes = factors, a monotone map of them, their 45-degree rotation and random codes."""
    codes = {
        "factors": uniform_factors,
        "monotone": monotone_codes(uniform_factors),
        "rotated": uniform_factors @ ROTATE_AB.T,
        "random": random_codes(N_UNIFORM),
    }
    return {label: continuous_metrics(c, uniform_factors, NAMES, *SPLIT, seed=0) for label, c in codes.items()}


def test_quantile_discretize_known_answers():
    values = np.array([[5.0, 1.0], [1.0, 1.0], [3.0, 2.0], [2.0, 2.0], [4.0, 2.0], [100.0, 1.0]])
    labels = quantile_discretize(values, 3)  # column 0: 6 values, ranks 5 1 3 2 4 6 -> floor((r - 1) / 2)
    np.testing.assert_array_equal(labels[:, 0], [2, 0, 1, 0, 1, 2])
    np.testing.assert_array_equal(labels[:, 1], [0, 0, 1, 1, 1, 0])  # two values <= 3 bins: kept
    ties = np.array([[0.0], [0.0], [0.0], [1.0], [2.0], [3.0]])  # ties never split across bins
    np.testing.assert_array_equal(quantile_discretize(ties, 2)[:, 0], [0, 0, 0, 1, 1, 1])
    continuous = np.random.default_rng(0).normal(size=(1000, 2))
    labels = quantile_discretize(continuous, 20)
    assert np.all(np.bincount(labels[:, 0]) == 50)
    np.testing.assert_array_equal(quantile_discretize(np.exp(continuous) * 7 - 3, 20), labels)
    moved = continuous.copy()
    moved[:10, 0] = 1e6  # ten outliers shift every other value's rank by at most 10 of the 50 per bin
    change = quantile_discretize(moved, 20)[10:, 0] - labels[10:, 0]
    assert set(np.unique(change)) <= {0, -1} and np.mean(change != 0) < 0.15
    with pytest.raises(AtlasError, match="n_bins"):
        quantile_discretize(values, 1)


def test_mutual_information_matrix_matches_sklearn_on_labels():
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 7, size=(500, 2)), rng.integers(3, 9, size=(500, 3))
    b[:, 0] = a[:, 0] + rng.integers(0, 2, size=500)
    expected = [[mutual_info_score(x, y) for y in b.T] for x in a.T]
    np.testing.assert_allclose(mutual_information_matrix(a, b), expected, rtol=1e-12)


def test_quantile_mig_on_the_real_grid_is_one_at_every_bin_count(real_grid):
    codes = np.column_stack([np.log(real_grid[:, 1]), np.arctanh(real_grid[:, 2]), real_grid[:, 0] ** 2])
    sensitivity = mig_bin_sensitivity(codes, real_grid, factor_names=("var_x", "var_y", "rho"))
    np.testing.assert_allclose(sensitivity["mig"], 1.0, atol=1e-12)  # a full grid: independent factors exactly
    assert sensitivity["bins"] == [5, 10, 20, 40] and sensitivity["range"] == pytest.approx(0.0, abs=1e-12)
    result = quantile_mig(codes, real_grid, 20, ("var_x", "var_y", "rho"))
    assert result["best_latent"] == {"var_x": 2, "var_y": 0, "rho": 1} and result["binning"] == "quantile"
    assert result["factor_entropy"]["rho"] == pytest.approx(np.log(19))  # 19 rho values kept as they are
    grid_level_label = (475 * np.arange(25)) * 20 // len(real_grid)  # 25 tied groups of 475 rows -> 20 labels
    assert result["factor_entropy"]["var_x"] == pytest.approx(entropy(np.bincount(grid_level_label)))


def test_quantile_mig_known_answers_on_continuous_factors(uniform_factors, uniform_scores):
    perfect, monotone = uniform_scores["factors"]["mig"], uniform_scores["monotone"]["mig"]
    bias = 19**2 / (2 * N_UNIFORM) / np.log(20)  # plug-in MI of independent 20-bin labels, over H = log 20
    assert 1 - 1.5 * bias < perfect["mig"] < 1.0
    assert monotone["mig"] == pytest.approx(perfect["mig"], abs=1e-12)  # only ranks matter
    assert monotone["best_latent"] == {"a": 1, "b": 2, "c": 0}
    rotated = uniform_scores["rotated"]["mig"]
    assert rotated["gaps"]["c"] == pytest.approx(perfect["gaps"]["c"], abs=0.01)
    assert max(rotated["gaps"]["a"], rotated["gaps"]["b"]) < 0.05 and rotated["mig"] < 0.4
    assert uniform_scores["random"]["mig"]["mig"] < 0.02
    assert uniform_scores["random"]["mig_bins"]["mig"][-1] < 0.05


def test_ten_outliers_wreck_equal_width_mig_but_not_quantile_mig(real_grid):
    codes = real_grid.copy()
    rng = np.random.default_rng(6)
    rows = rng.choice(len(codes), size=10, replace=False)
    codes[rows] += 20 * np.ptp(codes, axis=0) * rng.choice([-1.0, 1.0], size=(10, 3))
    assert mutual_information_gap(real_grid, real_grid)["mig"] == pytest.approx(1.0, abs=1e-9)
    assert mutual_information_gap(codes, real_grid)["mig"] < 0.5
    assert quantile_mig(codes, real_grid)["mig"] > 0.95


def test_dci_from_importance_known_answers():
    ideal = dci_from_importance(np.eye(3) * [1.0, 2.0, 3.0])
    assert ideal["disentanglement"] == pytest.approx(1.0) and ideal["completeness"] == pytest.approx(1.0)
    spread = dci_from_importance(np.ones((3, 3)))
    assert spread["disentanglement"] == pytest.approx(0.0, abs=1e-12)
    assert spread["completeness"] == pytest.approx(0.0, abs=1e-12)
    # Axis 0 serves both factors (D_0 = 0), axis 1 only factor b (D_1 = 1); factor a uses axis 0 only
    # (C_a = 1), factor b both equally (C_b = 0); weights 2/3, 1/3 and 1/3, 2/3.
    shared = dci_from_importance(np.array([[1.0, 1.0], [0.0, 1.0]]), ("a", "b"))
    assert shared["disentanglement_per_latent"] == pytest.approx([0.0, 1.0])
    assert shared["completeness_per_factor"] == pytest.approx({"a": 1.0, "b": 0.0})
    assert shared["disentanglement"] == pytest.approx(1 / 3) and shared["completeness"] == pytest.approx(1 / 3)
    matrix = np.random.default_rng(1).uniform(size=(4, 3))
    result = dci_from_importance(matrix)
    p = matrix / matrix.sum(axis=1, keepdims=True)
    per_latent = 1 + (p * np.log(p)).sum(axis=1) / np.log(3)
    assert result["disentanglement"] == pytest.approx(per_latent @ (matrix.sum(axis=1) / matrix.sum()))
    zero = dci_from_importance(np.zeros((3, 2)))
    assert zero["disentanglement"] == 0.0 and zero["completeness"] == 0.0
    with pytest.raises(AtlasError, match="D, K >= 2"):
        dci_from_importance(np.ones((1, 3)))


@pytest.mark.parametrize("regressor", ["dci_lasso", "dci_trees"])
def test_dci_known_answers(uniform_scores, regressor):
    perfect, rotated, random = (uniform_scores[k][regressor] for k in ("factors", "rotated", "random"))
    assert perfect["disentanglement"] > 0.98 and perfect["completeness"] > 0.98
    assert perfect["informativeness"] > 0.97
    assert uniform_scores["monotone"][regressor]["disentanglement"] > 0.98
    assert rotated["disentanglement"] < 0.65 and rotated["completeness"] < 0.65
    assert rotated["completeness_per_factor"]["c"] > 0.98  # a: two axes equally, 1 - log 2 / log 3 = 0.37
    assert rotated["completeness_per_factor"]["a"] == pytest.approx(1 - np.log(2) / np.log(3), abs=0.03)
    assert random["disentanglement"] < 0.05 and random["completeness"] < 0.05
    assert -0.1 < random["informativeness"] < 0.01


def test_dci_lasso_weights_and_informativeness_have_closed_forms(uniform_factors):
    # factor a = z0 exactly: its standardised weight is 1 - alpha; its R^2 is 1 - alpha^2 in population
    result = dci(uniform_factors, uniform_factors, *SPLIT, "lasso", NAMES)
    alpha = lasso_alpha(N_TRAIN)
    assert result["settings"]["alpha"] == pytest.approx(4 / np.sqrt(N_TRAIN))
    assert np.array(result["importance"])[0, 0] == pytest.approx(1 - alpha, abs=0.01)
    assert result["informativeness_per_factor"]["a"] == pytest.approx(1 - alpha**2, abs=0.01)
    trees = dci(uniform_factors, uniform_factors, *SPLIT, "trees", NAMES, seed=3)
    assert trees["settings"]["train_rows"] == N_TRAIN and np.allclose(np.sum(trees["importance"], axis=0), 1.0)


def test_explicitness_known_answers(uniform_scores, real_grid):
    perfect, rotated = uniform_scores["factors"]["explicitness"], uniform_scores["rotated"]["explicitness"]
    assert perfect["explicitness"] > 0.97 and uniform_scores["monotone"]["explicitness"]["explicitness"] > 0.9
    assert rotated["explicitness"] == pytest.approx(perfect["explicitness"], abs=1e-12)
    assert -0.2 < uniform_scores["random"]["explicitness"]["explicitness"] < 0.01
    split = np.arange(0, len(real_grid), 5), np.setdiff1d(np.arange(len(real_grid)), np.arange(0, len(real_grid), 5))
    assert explicitness(real_grid, real_grid, *split)["explicitness"] > 0.97


def test_rotation_invariance_claims_hold(uniform_scores):
    """Every score flagged invariant moves by < 0.01 under the rotation; the others drop by > 0.3 (trees: fall)."""
    def score(result: dict, key: str) -> float:
        part, _, field = key.partition(".")
        return {"mig": lambda: result["mig"]["mig"], "explicitness": lambda: result["explicitness"]["explicitness"]
                }.get(part, lambda: result[part][field])()

    for key, claim in ROTATION_INVARIANCE.items():
        if key == "factorvae":
            continue  # checked in test_factorvae_score_known_answers
        before, after = score(uniform_scores["factors"], key), score(uniform_scores["rotated"], key)
        if claim["invariant"]:
            assert after == pytest.approx(before, abs=0.01), key
        elif key == "dci_trees.informativeness":
            assert after < before, key
        else:
            assert after < before - 0.3, key


def test_factorvae_score_known_answers():
    rng, noise = np.random.default_rng(7), np.random.default_rng(9)
    sampler = uniform_box_sampler(np.zeros(3), np.ones(3))
    maps = {"factors": lambda f: f, "rotated": lambda f: f @ ROTATE_AB.T,
            "random": lambda f: noise.normal(size=f.shape)}
    scores = {}
    for label, code_map in maps.items():
        batch_codes, fixed = interventional_batches(sampler, lambda f: f, code_map, 600, 32, np.random.default_rng(8))
        scale = code_map(sampler(5000, rng)).std(axis=0)
        scores[label] = factorvae_score(batch_codes, fixed, scale, 3, factor_names=NAMES)
    assert scores["factors"]["factorvae"] == 1.0 and scores["factors"]["latent_to_factor"] == ["a", "b", "c"]
    assert 0.55 < scores["rotated"]["factorvae"] < 0.8  # a and b share two axes: half their votes go astray
    assert scores["rotated"]["per_factor"]["c"] == 1.0
    assert abs(scores["random"]["factorvae"] - 1 / 3) < 0.07 and scores["random"]["chance"] == pytest.approx(1 / 3)
    assert scores["factors"]["n_train_votes"] == 300 and scores["factors"]["n_eval_votes"] == 300


def test_factorvae_majority_vote_by_hand():
    # Four votes, two train: axis 0 varies least when factor 1 is fixed, so axis 0 -> factor 1.
    low = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # (B, D) three codes per batch
    axis0_still = low + np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 2.0]])
    axis1_still = low + np.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 0.0]])
    batch_codes = np.stack([axis0_still, axis1_still, axis0_still, axis1_still])  # (V, B, D)
    result = factorvae_score(batch_codes, np.array([1, 0, 1, 1]), np.ones(2), 2)
    assert result["votes"] == [[0, 1], [1, 0]] and result["latent_to_factor"] == ["f1", "f0"]
    assert result["train_accuracy"] == 1.0 and result["factorvae"] == 0.5  # vote 4 (axis 1, factor 1) is wrong
    inactive = factorvae_score(batch_codes, np.array([1, 0, 1, 1]), np.ones(2), 2, active=np.array([False, True]))
    assert inactive["votes"] == [[0, 0], [1, 1]]
    with pytest.raises(AtlasError, match="active latent axis"):
        factorvae_score(batch_codes, np.array([1, 0, 1, 1]), np.zeros(2), 2)
    with pytest.raises(AtlasError, match="fixed_factor"):
        factorvae_score(batch_codes, np.array([1, 0, 1]), np.ones(2), 2)
    with pytest.raises(AtlasError, match="train_fraction"):
        factorvae_score(batch_codes, np.array([1, 0, 1, 1]), np.ones(2), 2, train_fraction=1.0)


def test_interventional_batches_hold_one_factor_and_are_reproducible():
    low, high = np.array([0.1, 0.1, -0.95]), np.array([4.9, 4.9, 0.85])
    sampler = uniform_box_sampler(low, high)
    batch_codes, fixed = interventional_batches(sampler, lambda f: f, lambda x: x, 40, 8, np.random.default_rng(3))
    assert batch_codes.shape == (40, 8, 3) and fixed.shape == (40,) and set(fixed) == {0, 1, 2}
    held = batch_codes[np.arange(40), :, fixed]  # (V, B)
    assert np.all(held == held[:, :1]) and np.all((held >= low[fixed, None]) & (held <= high[fixed, None]))
    others = np.ones((40, 3), dtype=bool)
    others[np.arange(40), fixed] = False
    assert np.all(batch_codes.std(axis=1)[others] > 0)
    again, _ = interventional_batches(sampler, lambda f: f, lambda x: x, 40, 8, np.random.default_rng(3), chunk_images=24)
    np.testing.assert_array_equal(again, batch_codes)
    with pytest.raises(AtlasError, match="encode returned"):
        interventional_batches(sampler, lambda f: f, lambda x: x[:, 0], 4, 8, np.random.default_rng(3))


def test_interventional_factorvae_through_the_renderer_and_a_model():
    axis, names = grid_axis(12, 3.0), ("var_x", "var_y", "rho")
    torch.manual_seed(0)
    model = build_model(tiny_model_config(kind="vae", latent_dim=4).for_images((12, 12)))
    sampler = uniform_box_sampler(np.array([0.3, 0.3, -0.6]), np.array([2.5, 2.5, 0.7]))

    def render(factors: np.ndarray) -> np.ndarray:
        return render_from_factors(factors, names, axis)

    def encode(images: np.ndarray) -> np.ndarray:
        return model_encode(model, images)[0]

    scale = encode(render(sampler(200, np.random.default_rng(0)))).std(axis=0)
    result = interventional_factorvae(sampler, render, encode, scale, np.random.default_rng(1), n_votes=20,
                                      batch_size=8, factor_names=names)
    again = interventional_factorvae(sampler, render, encode, scale, np.random.default_rng(1), n_votes=20,
                                     batch_size=8, factor_names=names)
    assert result == again and 0.0 <= result["factorvae"] <= 1.0
    assert result["n_eval_votes"] == 10 and len(result["votes"]) == 4 and json.dumps(result)


def test_continuous_metrics_is_json_reproducible_and_checks_input(uniform_factors, uniform_scores):
    result = uniform_scores["factors"]
    assert set(result) == {"mig", "mig_bins", "dci_lasso", "dci_trees", "explicitness", "rotation_invariance"}
    assert json.loads(json.dumps(result)) == result
    assert continuous_metrics(uniform_factors, uniform_factors, NAMES, *SPLIT, seed=0) == result
    assert result["dci_trees"]["settings"]["n_test"] == N_UNIFORM - N_TRAIN
    train, test = SPLIT
    with pytest.raises(AtlasError, match="overlap"):
        continuous_metrics(uniform_factors, uniform_factors, NAMES, train, np.append(test, 0))
    with pytest.raises(AtlasError, match="factor names"):
        continuous_metrics(uniform_factors, uniform_factors, ("a",), train, test)
    with pytest.raises(AtlasError, match="finite"):
        continuous_metrics(np.full_like(uniform_factors, np.nan), uniform_factors, NAMES, train, test)
    with pytest.raises(AtlasError, match="outside"):
        dci(uniform_factors, uniform_factors, train, np.array([N_UNIFORM, 1]))
    with pytest.raises(AtlasError, match="constant"):
        dci(uniform_factors, np.column_stack([uniform_factors[:, :2], np.ones(N_UNIFORM)]), train, test)
    with pytest.raises(AtlasError, match="unknown DCI regressor"):
        dci(uniform_factors, uniform_factors, train, test, "forest")
