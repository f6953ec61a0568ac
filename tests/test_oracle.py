import csv
import io
import json

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
from scipy.stats import multivariate_normal, multivariate_t

from latent_atlas.config import DataConfig, FactorRange
from latent_atlas.corruptions import shape_threshold_for
from latent_atlas.data import make_dataset, render_heatmaps
from latent_atlas.errors import AtlasError
from latent_atlas.io import read_npz, write_npz
from latent_atlas.oracle import (
    FAMILIES,
    HeatmapOracle,
    OracleResult,
    _Grid,
    _heatmap_and_tangent,
    _quadratic_form_start,
    _to_factors,
    _to_theta,
    covariance_distance,
    covariance_matrices,
    recover_factors,
    recover_shape,
)
from latent_atlas.verdicts import FactorBox, NoveltyReference, Verdict

AXIS = np.linspace(-3.0, 3.0, 36)


def scipy_heatmap(theta: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Independent reference: scipy's density at theta = (log var_x, log var_y, atanh rho[, log df]), / grid max."""
    var_x, var_y, rho = np.exp(theta[0]), np.exp(theta[1]), np.tanh(theta[2])
    cov_xy = rho * np.sqrt(var_x * var_y)
    cov = [[var_x, cov_xy], [cov_xy, var_y]]
    dist = multivariate_normal([0, 0], cov) if len(theta) == 3 else multivariate_t([0, 0], cov, df=np.exp(theta[3]))
    x, y = np.meshgrid(axis, axis)
    density = dist.pdf(np.stack([x.ravel(), y.ravel()], axis=1))
    return density / density.max()


def relative_errors(recovered: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) relative variance errors and (N,) absolute rho errors."""
    return np.abs(recovered[:, :2] / true[:, :2] - 1), np.abs(recovered[:, 2] - true[:, 2])


@pytest.mark.parametrize("axis", [AXIS, np.linspace(-3.0, 3.0, 11)], ids=["even grid", "odd grid with 0"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_jacobian_matches_finite_differences_of_scipy_densities(axis, family):
    thetas = np.array([
        [0.3, -0.5, 0.4, np.log(3.0)],
        [np.log(4.9), np.log(0.1), np.arctanh(0.95), np.log(200.0)],  # elongated: peak away from the centre
        [np.log(4.9), np.log(4.9), np.arctanh(-0.85), np.log(2.0)],
    ])[:, : len(FAMILIES[family])]
    grid = _Grid.build(axis)
    f, tangent = _heatmap_and_tangent(thetas, grid)
    jacobian = tangent.jacobian(grid)
    step = 1e-6
    for n, theta in enumerate(thetas):
        np.testing.assert_allclose(f[n], scipy_heatmap(theta, axis), atol=1e-10)
        for k in range(len(theta)):
            shift = np.eye(len(theta))[k] * step
            numeric = (scipy_heatmap(theta + shift, axis) - scipy_heatmap(theta - shift, axis)) / (2 * step)
            np.testing.assert_allclose(jacobian[n, k], numeric, atol=1e-7)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_normal_equations_are_those_of_the_jacobian(family):
    """J r and J J^T as the fit forms them (for the Gaussian from moments, without J) equal the products of the
    explicit Jacobian, also for a subset of the rows."""
    rng = np.random.default_rng(0)
    k = len(FAMILIES[family])
    grid = _Grid.build(AXIS)
    thetas = np.column_stack([rng.uniform(-2.0, 1.6, (40, 2)), rng.uniform(-2.5, 2.5, 40), rng.uniform(-1, 9, 40)])
    f, tangent = _heatmap_and_tangent(thetas[:, :k], grid)
    residual = f - rng.random(f.shape)
    rows = np.arange(40) % 3 != 0
    jacobian = tangent.jacobian(grid)[rows]  # (M, K, P)
    gradient, normal, step_matrix = tangent.rows(rows).normal_equations(residual[rows], grid)
    np.testing.assert_allclose(gradient, np.einsum("nkp,np->nk", jacobian, residual[rows]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(normal, np.einsum("nkp,nlp->nkl", jacobian, jacobian), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(step_matrix, normal)  # no Newton rows asked for


def test_the_gaussian_newton_matrix_is_the_hessian_of_the_cost():
    """Where asked for and positive definite, the step's matrix is the whole Hessian of 1/2 ||f - t||^2 (finite
    differences of scipy's densities); elsewhere, and for the rows not asked, it is Gauss-Newton's J J^T."""
    rng = np.random.default_rng(3)
    grid = _Grid.build(AXIS)
    thetas = np.array([[0.3, -0.5, 0.4], [np.log(0.05), np.log(0.8), np.arctanh(0.9)], [0.9, 0.2, -1.2],
                       [-1.0, -1.5, 0.1]])
    f, tangent = _heatmap_and_tangent(thetas, grid)
    targets = 0.5 * f + 0.4 * rng.random(f.shape)  # large residuals: the curvature term matters
    newton = np.array([True, True, True, False])
    gradient, normal, matrix = tangent.normal_equations(f - targets, grid, newton=newton)
    jacobian = tangent.jacobian(grid)
    gauss_newton = np.einsum("nkp,nlp->nkl", jacobian, jacobian)
    np.testing.assert_allclose(normal, gauss_newton, rtol=1e-10, atol=1e-12)
    step = 1e-4
    for n, theta in enumerate(thetas):
        def cost(t, target=targets[n]):
            return 0.5 * np.sum((scipy_heatmap(t, AXIS) - target) ** 2)
        hessian = np.empty((3, 3))
        for k in range(3):
            for m in range(3):
                dk, dm = np.eye(3)[k] * step, np.eye(3)[m] * step
                hessian[k, m] = (cost(theta + dk + dm) - cost(theta + dk - dm) - cost(theta - dk + dm)
                                 + cost(theta - dk - dm)) / (4 * step * step)
        positive = np.all(np.linalg.eigvalsh(hessian) > 0)
        expected = hessian if newton[n] and positive else gauss_newton[n]
        np.testing.assert_allclose(matrix[n], expected, rtol=1e-5, atol=1e-6 * np.abs(hessian).max())
        if newton[n]:
            assert positive  # these points exercise the Newton matrix itself
            assert np.abs(hessian - gauss_newton[n]).max() > 1e-2 * np.abs(hessian).max()  # and it differs from J J^T
    np.testing.assert_allclose(gradient, np.einsum("nkp,np->nk", jacobian, f - targets), rtol=1e-10, atol=1e-12)


def test_a_fit_far_from_any_heatmap_reaches_the_least_squares_optimum(monkeypatch):
    """A thin ellipse over a broad blob leaves a large residual, where Gauss-Newton alone crawls and stops early
    (off by 7e-4); with Newton steps the fit lands on the optimum that scipy's least_squares finds."""
    image = render_heatmaps([0.02], [0.6], [0.85], AXIS)[0] + 0.5 * render_heatmaps([2.0], [2.0], [0.0], AXIS)[0]
    factors = recover_factors(image, AXIS)[0][0]
    monkeypatch.setattr("latent_atlas.oracle._NEWTON_BELOW", 0.0)  # Gauss-Newton only
    crawled = recover_factors(image, AXIS)[0][0]
    reference = scipy.optimize.least_squares(lambda t: scipy_heatmap(t, AXIS) - image.ravel(), _to_theta(crawled[None])[0],
                                             method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    optimum = _to_factors(reference.x[None])[0]
    np.testing.assert_allclose(factors, optimum, rtol=1e-6)
    assert np.abs(crawled / optimum - 1).max() > 1e-4  # what the test guards against


@pytest.mark.parametrize("kind", ["gaussian", "student_t"])
def test_quadratic_form_start_is_exact_on_clean_heatmaps(kind):
    dataset = make_dataset(DataConfig(kind=kind, sampling="random", n_samples=200, seed=3))
    start, ok = _quadratic_form_start(dataset.images.reshape(200, -1).astype(np.float64),
                                      _Grid.build(dataset.axis), kind)
    assert ok.all()
    variance_error, rho_error = relative_errors(start, dataset.factors)
    assert variance_error.max() < 1e-4 and rho_error.max() < 1e-4  # the grid truncation does not bias it
    if kind == "student_t":
        np.testing.assert_array_equal(start[:, 3], dataset.factors[:, 3])  # 2 and 200 lie on the df profile


def test_default_gaussian_dataset_is_recovered_within_the_targets(gaussian_full):
    factors, residual = recover_factors(gaussian_full.images, gaussian_full.axis)
    variance_error, rho_error = relative_errors(factors, gaussian_full.factors)
    # Targets: variances within 2 %, rho within 0.02. Measured: about 3e-8 and 2e-8 (float32 images).
    assert variance_error.max() < 1e-5
    assert rho_error.max() < 1e-5
    assert residual.max() < 1e-5


def test_randomly_sampled_factors_are_recovered():
    dataset = make_dataset(DataConfig(sampling="random", n_samples=1000, seed=7))
    result = HeatmapOracle.for_dataset(dataset).recover(dataset.images)
    variance_error, rho_error = relative_errors(result.factors, dataset.factors)
    assert variance_error.max() < 1e-5 and rho_error.max() < 1e-5
    assert result.residual.max() < 1e-5


def test_student_t_dataset_recovers_factors_and_tells_df_2_from_200(student_t_full):
    dataset = student_t_full
    test = dataset.test_idx
    result = HeatmapOracle.for_dataset(dataset).recover(dataset.images[test])
    assert result.factor_names == ("var_x", "var_y", "rho", "df")
    variance_error, rho_error = relative_errors(result.factors, dataset.factors[test])
    assert variance_error.max() < 1e-5 and rho_error.max() < 1e-5
    true_df = dataset.factor("df")[test]
    assert set(np.unique(true_df)) == {2.0, 200.0}
    np.testing.assert_array_equal(result.factor("df") > 20.0, true_df > 20.0)  # every image classified right
    np.testing.assert_allclose(result.factor("df"), true_df, rtol=1e-3)
    noisy = dataset.images[test[::4]] + np.random.default_rng(8).normal(0.0, 0.01, (len(test[::4]), 36, 36))
    noisy_df = recover_factors(noisy, dataset.axis, "student_t")[0][:, 3]
    np.testing.assert_array_equal(noisy_df > 20.0, true_df[::4] > 20.0)


def test_student_t_df_off_the_start_profile_is_found_by_the_refinement():
    config = DataConfig(kind="student_t", sampling="random", n_samples=300, df_heavy=3.5, df_light=50.0, seed=2)
    dataset = make_dataset(config)
    factors, residual = recover_factors(dataset.images, dataset.axis, "student_t")
    np.testing.assert_allclose(factors, dataset.factors, rtol=1e-4, atol=1e-5)
    assert residual.max() < 1e-5


def test_tiny_grids_are_recovered(tiny_dataset, tiny_t_dataset):
    for dataset in (tiny_dataset, tiny_t_dataset):
        result = HeatmapOracle.for_dataset(dataset).recover(dataset.images)
        np.testing.assert_allclose(result.factors, dataset.factors, rtol=1e-5, atol=1e-6)


def test_residual_is_zero_on_real_images_and_grows_like_the_added_noise(gaussian_full):
    rng = np.random.default_rng(0)
    images = gaussian_full.images[gaussian_full.test_idx[:300]]
    medians = []
    for sigma in (0.0, 0.003, 0.01, 0.03):
        noisy = images + rng.normal(0.0, sigma, images.shape)
        medians.append(np.median(recover_factors(noisy, AXIS)[1]))
        # White noise mostly lies off the 3-parameter family: residual ~ sigma * sqrt(pixels - 3).
        np.testing.assert_allclose(medians[-1], sigma * np.sqrt(36 * 36 - 3), rtol=0.05, atol=1e-6)
    assert medians[0] < 1e-6 and np.all(np.diff(medians) > 0)


def test_mild_noise_keeps_factors_within_the_targets(gaussian_full):
    rng = np.random.default_rng(1)
    test = gaussian_full.test_idx[::5]
    noisy = gaussian_full.images[test] + rng.normal(0.0, 0.002, (len(test), 36, 36))
    variance_error, rho_error = relative_errors(recover_factors(noisy, AXIS)[0], gaussian_full.factors[test])
    assert variance_error.max() < 0.02 and rho_error.max() < 0.02


def test_batch_results_equal_single_image_results(gaussian_full):
    rng = np.random.default_rng(2)
    images = gaussian_full.images[::997] + rng.normal(0.0, 0.05, (12, 36, 36))  # needs different iteration counts
    oracle = HeatmapOracle(AXIS)
    batch = oracle.recover(images)
    for n, image in enumerate(images):
        single = oracle.recover(image)  # a 2-D image is a batch of one
        assert single.factors.shape == (1, 3) and single.residual.shape == (1,)
        np.testing.assert_allclose(single.factors[0], batch.factors[n], rtol=1e-10)
        np.testing.assert_allclose(single.residual[0], batch.residual[n], rtol=1e-10)


def test_images_unlike_any_heatmap_get_finite_factors_and_large_residuals(gaussian_full):
    blob = gaussian_full.images[300]
    two_blobs = np.maximum(np.roll(blob, 8, axis=1), np.roll(blob, -8, axis=1))
    images = np.stack([np.zeros((36, 36)), np.ones((36, 36)), -np.ones((36, 36)), two_blobs,
                       np.random.default_rng(3).uniform(size=(36, 36))])
    for family in FAMILIES:
        result = HeatmapOracle(AXIS, family).recover(images)
        assert np.all(np.isfinite(result.factors)) and np.all(result.factors[:, :2] > 0)
        assert np.all(np.abs(result.factor("rho")) < 1)
        assert np.all(result.residual > 0.1)
        fitted = HeatmapOracle(AXIS, family).render(result.factors)
        np.testing.assert_allclose(np.linalg.norm((images - fitted).reshape(5, -1), axis=1), result.residual, rtol=1e-5)


def test_render_gives_the_generators_heatmap(gaussian_full):
    oracle = HeatmapOracle.for_dataset(gaussian_full)
    np.testing.assert_array_equal(oracle.render(gaussian_full.factors[:50]), gaussian_full.images[:50])


def test_an_empty_image_set_gets_an_empty_verdict_with_novelty(gaussian_full):
    oracle = HeatmapOracle.for_dataset(gaussian_full)
    verdict = oracle.verdict(np.zeros((0, 36, 36), dtype=np.float32))
    assert verdict.novelty.shape == (0,) and verdict.nearest_factors.shape == (0, 3)
    assert verdict.summary()["n"] == 0


def test_result_factor_by_name():
    result = HeatmapOracle(AXIS).recover(render_heatmaps([2.0], [0.5], [0.3], AXIS))
    assert isinstance(result, OracleResult) and len(result) == 1
    np.testing.assert_allclose(result.factor("var_y"), [0.5], rtol=1e-6)
    with pytest.raises(AtlasError, match="unknown factor 'df'"):
        result.factor("df")


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros(36), "shape"),
        (np.zeros((2, 2, 36, 36)), "shape"),
        (np.zeros((3, 12, 12)), "12x12 but the oracle's grid is 36x36"),
        (np.full((2, 36, 36), np.nan), "NaN or infinite"),
        (np.full((36, 36), np.inf), "NaN or infinite"),
        ([["a"]], "numeric array"),
    ],
)
def test_bad_images_raise_one_clear_line(images, message):
    with pytest.raises(AtlasError, match=message) as info:
        HeatmapOracle(AXIS).recover(images)
    assert "\n" not in str(info.value)


def test_bad_construction_raises_atlas_errors():
    with pytest.raises(AtlasError, match="unknown oracle family 'cauchy'"):
        HeatmapOracle(AXIS, family="cauchy")
    with pytest.raises(AtlasError, match="unknown oracle family"):
        recover_factors(np.zeros((36, 36)), AXIS, family="normal")
    with pytest.raises(AtlasError, match="axis"):
        HeatmapOracle(AXIS[::-1])


def rotated(factors: np.ndarray, angle: float) -> np.ndarray:
    """The factors of R Sigma R^T: the same heatmap turned by ``angle``."""
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    cov = rotation @ covariance_matrices(factors) @ rotation.T
    var_x, var_y = cov[:, 0, 0], cov[:, 1, 1]
    return np.stack([var_x, var_y, cov[:, 0, 1] / np.sqrt(var_x * var_y)], axis=1)


def random_factors(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack([rng.uniform(0.1, 4.9, n), rng.uniform(0.1, 4.9, n), rng.uniform(-0.95, 0.95, n)])


def test_covariance_distances_match_scipy_references():
    rng = np.random.default_rng(6)
    a, b = random_factors(rng, 20), random_factors(rng, 20)
    cov_a, cov_b = covariance_matrices(a), covariance_matrices(b)
    affine = [np.sqrt(np.sum(np.log(scipy.linalg.eigh(y, x, eigvals_only=True)) ** 2)) for x, y in zip(cov_a, cov_b)]
    log_euclid = [np.linalg.norm(scipy.linalg.logm(x) - scipy.linalg.logm(y)) for x, y in zip(cov_a, cov_b)]
    np.testing.assert_allclose(covariance_distance(a, b), affine, rtol=1e-9)
    np.testing.assert_allclose(covariance_distance(a, b, "log_euclidean"), log_euclid, rtol=1e-9)
    np.testing.assert_allclose(covariance_distance(a, b, "frobenius"), np.linalg.norm(cov_a - cov_b, axis=(1, 2)))
    # Relative: doubling one variance costs log 2 whatever its size.
    doubled = covariance_distance([[0.1, 1.0, 0.0], [2.0, 1.0, 0.0]], [[0.2, 1.0, 0.0], [4.0, 1.0, 0.0]])
    np.testing.assert_allclose(doubled, [np.log(2.0)] * 2)


@pytest.mark.parametrize("metric", ["affine_invariant", "log_euclidean", "frobenius"])
def test_covariance_distance_is_a_rotation_invariant_symmetric_distance(metric):
    rng = np.random.default_rng(7)
    a, b = random_factors(rng, 50), random_factors(rng, 50)
    d = covariance_distance(a, b, metric)
    assert np.all(d > 0)
    np.testing.assert_allclose(covariance_distance(b, a, metric), d, rtol=1e-9)
    np.testing.assert_allclose(covariance_distance(a, a, metric), 0.0, atol=1e-12)
    for angle in (0.3, np.pi / 2, 2.0):
        np.testing.assert_allclose(covariance_distance(rotated(a, angle), rotated(b, angle), metric), d, rtol=1e-7)
    with_df = np.column_stack([a, np.full(50, 2.0)])
    np.testing.assert_array_equal(covariance_distance(with_df, b, metric), d)  # df is ignored


def test_covariance_distance_rejects_bad_input():
    with pytest.raises(AtlasError, match="unknown covariance metric"):
        covariance_distance([[1.0, 1.0, 0.0]], [[1.0, 1.0, 0.0]], metric="wasserstein")
    with pytest.raises(AtlasError, match="differ in length"):
        covariance_distance(np.ones((2, 3)) * 0.5, np.ones((3, 3)) * 0.5)
    with pytest.raises(AtlasError, match="positive finite variances"):
        covariance_distance([[1.0, -1.0, 0.0]], [[1.0, 1.0, 0.0]])
    with pytest.raises(AtlasError, match="columns var_x, var_y, rho"):
        covariance_distance(np.ones((2, 2)), np.ones((2, 2)))


def test_parametrisation_round_trips_and_clips_into_the_box():
    factors = np.array([[0.1, 4.9, -0.95, 2.0], [1e-6, 1e6, 1.0, 1e9]])
    np.testing.assert_allclose(_to_factors(_to_theta(factors))[0], factors[0])
    np.testing.assert_allclose(_to_factors(_to_theta(factors))[1], [1e-3, 1e3, 0.999, 1e4])


@pytest.mark.slow
def test_full_student_t_dataset_is_recovered(student_t_full):
    result = HeatmapOracle.for_dataset(student_t_full).recover(student_t_full.images)
    variance_error, rho_error = relative_errors(result.factors, student_t_full.factors)
    assert variance_error.max() < 1e-5 and rho_error.max() < 1e-5
    np.testing.assert_array_equal(result.factor("df") > 20.0, student_t_full.factor("df") > 20.0)


def test_factor_range_grid_variances_reach_the_truncated_corner():
    """The corner the seed warns about: largest variances, where rho barely changes the image."""
    config = DataConfig(var_x=FactorRange(values=(4.5, 4.9)), var_y=FactorRange(values=(4.7, 4.9)),
                        rho=FactorRange(start=-0.95, stop=0.85, step=0.1))
    dataset = make_dataset(config)
    factors, _ = recover_factors(dataset.images, dataset.axis)
    variance_error, rho_error = relative_errors(factors, dataset.factors)
    assert variance_error.max() < 1e-5 and rho_error.max() < 1e-5


# ---------- the verdict: shape, range, novelty ----------


def test_factor_box_puts_half_a_grid_step_at_each_end_in_the_oracles_parametrisation():
    box = FactorBox.from_config(DataConfig())
    assert box.names == ("var_x", "var_y", "rho")
    low_rho = np.tanh(np.arctanh(-0.95) - (np.arctanh(-0.85) - np.arctanh(-0.95)) / 2)
    high_rho = np.tanh(np.arctanh(0.85) + (np.arctanh(0.85) - np.arctanh(0.75)) / 2)
    np.testing.assert_allclose(box.low, [0.1 / np.sqrt(3), 0.1 / np.sqrt(3), low_rho], rtol=1e-12)
    np.testing.assert_allclose(box.high, [4.9 * np.sqrt(4.9 / 4.7)] * 2 + [high_rho], rtol=1e-12)
    assert box.data_low == (0.1, 0.1, -0.95) and box.data_high == (4.9, 4.9, 0.85)
    # the extrapolations are out; every grid point and anything between is in
    outside = [[0.02, 4.9, 0.0], [20.0, 20.0, 0.0], [1.0, 1.0, 0.99], [0.05, 1.0, 0.0], [1.0, 1.0, -0.98]]
    assert not box.contains(outside).any()
    np.testing.assert_array_equal(box.outside(outside)[:, 2], [False, False, True, False, True])
    grid = make_dataset(DataConfig(var_x=FactorRange(values=(0.1, 4.9)), var_y=FactorRange(values=(0.1, 4.9)))).factors
    assert box.contains(grid).all() and box.contains([[0.06, 5.0, 0.88], [2.345, 0.1, -0.97]]).all()
    assert not box.contains([[np.nan, 1.0, 0.0]]).any()


def test_factor_box_for_random_sampling_single_values_and_student_t():
    random = FactorBox.from_config(DataConfig(sampling="random", n_samples=1000))  # a grid of 10 per factor
    step = 4.8 / 9
    assert random.low[0] == pytest.approx(0.1 * np.sqrt(0.1 / (0.1 + step)))
    assert random.high[0] == pytest.approx(4.9 * np.sqrt(4.9 / (4.9 - step)))
    single = FactorBox.from_config(DataConfig(var_x=FactorRange(values=(1.0,))))
    assert single.low[0] == pytest.approx(np.exp(-0.1)) and single.high[0] == pytest.approx(np.exp(0.1))
    t_box = FactorBox.from_config(DataConfig(kind="student_t"))
    assert t_box.names[3] == "df" and t_box.low[3] == pytest.approx(2 / np.sqrt(2)) and t_box.high[3] == np.inf
    in_range = t_box.contains([[1.0, 1.0, 0.0, df] for df in (1.0, 1.4, 1.5, 2.0, 50.0, 200.0, 1e4)])
    np.testing.assert_array_equal(in_range, [False, False, True, True, True, True, True])
    state = json.loads(json.dumps(t_box.to_dict()))
    assert state["high"][3] is None and FactorBox.from_dict(state) == t_box
    with pytest.raises(AtlasError, match="unreadable factor box"):
        FactorBox.from_dict({"names": ["var_x"]})
    with pytest.raises(AtlasError, match="shape"):
        t_box.contains(np.ones((2, 3)))


def test_heavier_tails_than_the_data_change_the_image_more_than_lighter_ones():
    """Why df has no upper bound: df 200 -> 10,000 changes a heatmap far less than df 2 -> 1.41 does."""
    factors = np.array([[1.0, 1.0, 0.0], [0.3, 2.0, 0.5]])

    def shape_change(df_a, df_b):
        a, b = (render_heatmaps(*factors.T, AXIS, np.full(2, df)).astype(np.float64) for df in (df_a, df_b))
        return np.linalg.norm((a - b).reshape(2, -1), axis=1) / np.linalg.norm(a.reshape(2, -1), axis=1)

    assert shape_change(200.0, 1e4).max() < 0.01 < 0.03 < shape_change(2.0, np.sqrt(2.0)).min()


def test_shape_residual_is_scale_free_where_the_absolute_residual_is_not():
    thin, round_ = render_heatmaps([0.1, 4.9], [0.3, 4.9], [0.5, 0.0], AXIS).astype(np.float64)
    pattern = np.random.default_rng(9).normal(size=(36, 36))
    pattern /= np.linalg.norm(pattern)
    images = np.stack([image + 0.05 * np.linalg.norm(image) * pattern for image in (thin, round_)])
    factors, residual, shape_residual = recover_shape(images, AXIS)
    assert residual[1] / residual[0] > 5  # the norms differ several-fold
    np.testing.assert_allclose(shape_residual, 0.05, rtol=0.02)  # white noise: all but 3 of 1,296 directions stay
    _, dimmed_residual, dimmed = recover_shape(0.9 * np.stack([thin, round_]), AXIS)
    assert dimmed_residual[1] / dimmed_residual[0] > 4
    np.testing.assert_allclose(dimmed, dimmed[0], rtol=0.15)  # 0.075 and 0.066 (absolute: 4.6x apart)
    assert 0.05 < dimmed.min() and dimmed.max() <= 0.1 + 1e-9  # at most |1 - a|: the fit may do a little better


def test_shape_residual_of_dark_and_extra_mass_images():
    blob = render_heatmaps([0.5], [0.5], [0.0], AXIS).astype(np.float64)[0]
    x, y = np.meshgrid(AXIS, AXIS)
    bright_spot = 5.0 * np.exp(-((x - 2.0) ** 2 + (y + 2.0) ** 2) / (2 * 0.25**2))
    images = np.stack([np.zeros((36, 36)), blob + bright_spot, blob])
    _, residual, shape_residual = recover_shape(images, AXIS)
    assert shape_residual[0] == pytest.approx(1.0)  # nothing there: the residual is the fitted heatmap itself
    assert shape_residual[1] > 1.0  # the extra mass outweighs the heatmap ...
    assert residual[1] / np.linalg.norm(images[1]) < 1.0  # ... where ||image||-scaling stays below 1
    assert shape_residual[2] < 1e-6


@pytest.fixture(scope="module")
def gaussian_oracle(gaussian_full) -> HeatmapOracle:
    return HeatmapOracle.for_dataset(gaussian_full, shape_threshold=0.05)


def test_verdict_fields_and_failures(gaussian_oracle, gaussian_full):
    clean = render_heatmaps([1.3, 0.02, 1.0], [0.7, 4.9, 1.0], [0.3, 0.0, 0.2], AXIS)
    noisy = clean[0] + np.random.default_rng(3).normal(0.0, 0.1, (36, 36))
    noisy_outside = clean[1] + np.random.default_rng(4).normal(0.0, 0.2, (36, 36))
    verdict = gaussian_oracle.verdict(np.concatenate([clean[:2], noisy[None], noisy_outside[None]]))
    assert isinstance(verdict, Verdict) and len(verdict) == 4 and verdict.shape_threshold == 0.05
    np.testing.assert_array_equal(verdict.shape_ok, [True, True, False, False])
    np.testing.assert_array_equal(verdict.in_range, [True, False, True, False])
    np.testing.assert_array_equal(verdict.valid, [True, False, False, False])
    assert verdict.failure.tolist() == ["", "range", "shape", "shape+range"]
    assert verdict.valid is verdict.valid  # computed once ...
    for checks in (verdict.shape_ok, verdict.outside, verdict.in_range, verdict.valid, verdict.failure):
        with pytest.raises(ValueError, match="read-only"):  # ... so no caller may change it for the others
            checks[0] = checks[1]
    np.testing.assert_allclose(verdict.factor("var_y")[:2], [0.7, 4.9], rtol=1e-5)
    fitted = gaussian_oracle.render(verdict.factors).astype(np.float64)
    np.testing.assert_allclose(verdict.shape_residual, verdict.residual / np.linalg.norm(fitted.reshape(4, -1), axis=1),
                               rtol=1e-5)


def test_novelty_is_the_exact_nearest_training_image(gaussian_oracle, gaussian_full):
    train, test = gaussian_full.train_idx, gaussian_full.test_idx
    queries = np.concatenate([gaussian_full.images[train[[0, 500]]], gaussian_full.images[test[:3]] + 0.01])
    verdict = gaussian_oracle.verdict(queries)
    np.testing.assert_array_equal(verdict.nearest_index[:2], train[[0, 500]])
    np.testing.assert_array_equal(verdict.novelty[:2], 0.0)
    flat = gaussian_full.images[train].reshape(len(train), -1).astype(np.float64)
    for row in range(2, 5):
        distances = np.linalg.norm(flat - queries[row].astype(np.float64).ravel(), axis=1)
        assert verdict.nearest_index[row] == train[np.argmin(distances)]
        assert verdict.novelty[row] == pytest.approx(distances.min(), rel=1e-12)
    np.testing.assert_array_equal(verdict.nearest_factors, gaussian_full.factors[verdict.nearest_index])
    skipped = gaussian_oracle.verdict(queries[:2], novelty=False)
    assert np.isnan(skipped.novelty).all() and (skipped.nearest_index == -1).all() and not skipped.has_novelty


def test_verdict_round_trips_through_npz_and_summarises(gaussian_oracle, tmp_path):
    images = render_heatmaps([1.0, 0.02, 2.0], [1.0, 4.9, 0.5], [0.0, 0.0, -0.4], AXIS)
    images[2] += np.random.default_rng(5).normal(0.0, 0.1, (36, 36)).astype(np.float32)
    verdict = gaussian_oracle.verdict(images)
    path = tmp_path / "verdict.npz"
    write_npz(path, verdict.to_arrays())
    restored = Verdict.from_arrays(read_npz(path))
    for name in ("factors", "residual", "shape_residual", "novelty", "nearest_index", "nearest_factors", "shape_ok",
                 "in_range", "valid", "failure"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(verdict, name))
    assert restored.box == verdict.box and restored.shape_threshold == verdict.shape_threshold
    summary = json.loads(json.dumps(verdict.summary()))
    assert summary["n"] == 3 and summary["shape_ok"] == pytest.approx(2 / 3) and summary["in_range"] == pytest.approx(2 / 3)
    assert summary["valid"] == pytest.approx(1 / 3)
    assert summary["failures"] == {"none": 1, "shape": 1, "range": 1, "shape+range": 0}
    assert summary["out_of_range_by_factor"] == {"var_x": 1, "var_y": 0, "rho": 0}
    rows = list(csv.DictReader(io.StringIO(verdict.to_csv())))
    assert [row["valid"] for row in rows] == ["true", "false", "false"] and rows[1]["failure"] == "range"
    assert float(rows[2]["shape_residual"]) == verdict.shape_residual[2]  # full precision
    np.testing.assert_array_equal(verdict.subset([2, 0]).failure, verdict.failure[[2, 0]])
    broken = {**verdict.to_arrays(), "novelty": np.zeros(5)}
    with pytest.raises(AtlasError, match="novelty"):
        Verdict.from_arrays(broken)
    with pytest.raises(AtlasError, match="unreadable verdict"):
        Verdict.from_arrays({"factors": np.zeros((1, 3))})


def test_the_default_shape_threshold_is_the_benchmark_rule_for_the_dataset(tiny_dataset):
    oracle = HeatmapOracle.for_dataset(tiny_dataset)
    assert oracle.shape_threshold == shape_threshold_for(tiny_dataset.config)
    assert oracle.verdict(tiny_dataset.images).valid.all()  # the data themselves are valid
    assert oracle.describe()["box"] == FactorBox.from_config(tiny_dataset.config).to_dict()


def test_verdicts_need_a_box_and_a_threshold():
    image = render_heatmaps([1.0], [1.0], [0.0], AXIS)
    with pytest.raises(AtlasError, match="no factor box"):
        HeatmapOracle(AXIS, shape_threshold=0.1).verdict(image)
    with pytest.raises(AtlasError, match="no shape threshold"):
        HeatmapOracle(AXIS, box=FactorBox.from_config(DataConfig())).verdict(image)
    for bad in (0.0, -1.0, np.nan, np.inf, "x"):
        with pytest.raises(AtlasError, match="shape threshold"):
            HeatmapOracle(AXIS, shape_threshold=bad)
    with pytest.raises(AtlasError, match="factor box covers"):
        HeatmapOracle(AXIS, family="student_t", box=FactorBox.from_config(DataConfig()))
    verdict = HeatmapOracle(AXIS, box=FactorBox.from_config(DataConfig()), shape_threshold=0.1).verdict(image)
    assert verdict.valid.all() and not verdict.has_novelty  # no reference: no novelty


def test_novelty_reference_from_arrays():
    images = render_heatmaps([0.5, 1.0, 2.0], [0.5, 1.0, 2.0], [0.0, 0.0, 0.0], AXIS)
    reference = NoveltyReference.from_arrays(images, np.array([[0.5, 0.5, 0.0], [1.0, 1.0, 0.0], [2.0, 2.0, 0.0]]))
    distance, index, factors = reference.nearest(render_heatmaps([1.1], [1.1], [0.0], AXIS))
    assert index.tolist() == [1] and factors.tolist() == [[1.0, 1.0, 0.0]] and distance[0] > 0
    with pytest.raises(AtlasError, match="at least one"):
        NoveltyReference.from_arrays(images[:0], np.zeros((0, 3)))
