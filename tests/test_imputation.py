import numpy as np
import pytest
import torch

from latent_atlas.analysis.imputation import (
    central_block_mask,
    factor_errors,
    imputation_scores,
    impute_iterative,
    impute_optimise,
    make_mask,
    missing_pixel_rmse,
    quadrant_mask,
    random_pixel_mask,
    start_images,
)
from latent_atlas.errors import AtlasError
from latent_atlas.models.inference import decode
from latent_atlas.oracle import HeatmapOracle

METHODS = {"iterative": impute_iterative, "optimise": impute_optimise}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_quadrant_masks_follow_the_dataset_orientation(tiny_dataset):
    axis = tiny_dataset.axis  # images[n, i, j] is at x = axis[j], y = axis[i]
    x, y = axis[None, :], axis[:, None]
    expected = {"upper_right": (x > 0) & (y > 0), "upper_left": (x < 0) & (y > 0),
                "lower_right": (x > 0) & (y < 0), "lower_left": (x < 0) & (y < 0)}
    for quadrant, truth in expected.items():
        np.testing.assert_array_equal(quadrant_mask(tiny_dataset.image_shape, quadrant), truth)


def test_odd_grids_keep_the_centre_row_and_column_observed():
    quadrants = ("upper_right", "upper_left", "lower_right", "lower_left")
    union = sum(quadrant_mask((5, 5), q).astype(int) for q in quadrants)
    assert union.max() == 1
    np.testing.assert_array_equal(union == 0, np.add.outer(np.arange(5) == 2, np.arange(5) == 2) > 0)


def test_central_block_is_centred_and_sized():
    mask = central_block_mask((36, 36))
    rows, columns = np.nonzero(mask)
    assert mask.sum() == 18 * 18
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (9, 26, 9, 26)
    assert central_block_mask((12, 12), side_fraction=1.0).all()


def test_random_pixel_masks_have_exact_counts_and_are_seeded():
    masks = random_pixel_mask((12, 12), 30, fraction=0.5, rng=np.random.default_rng(0))
    assert masks.shape == (30, 12, 12) and masks.dtype == bool
    assert (masks.sum(axis=(1, 2)) == 72).all()
    assert not (masks[0] == masks[1]).all()
    np.testing.assert_array_equal(masks, random_pixel_mask((12, 12), 30, fraction=0.5, rng=np.random.default_rng(0)))
    assert abs(masks.mean(axis=0) - 0.5).max() < 0.35  # every pixel is missing in some images, observed in others
    assert not random_pixel_mask((4, 4), 3, fraction=0.0).any()


def test_make_mask_broadcasts_fixed_masks_and_rejects_unknown_kinds():
    masks = make_mask("quadrant", (6, 6), 4, quadrant="lower_left")
    assert masks.shape == (4, 6, 6)
    np.testing.assert_array_equal(masks[3], quadrant_mask((6, 6), "lower_left"))
    assert make_mask("random_pixels", (6, 6), 4, rng=np.random.default_rng(1), fraction=0.25).sum() == 4 * 9
    with pytest.raises(AtlasError, match="unknown mask kind"):
        make_mask("stripes", (6, 6), 4)
    with pytest.raises(AtlasError, match="unknown quadrant"):
        quadrant_mask((6, 6), "middle")


def test_start_images_fill_only_the_missing_pixels(tiny_dataset):
    images = tiny_dataset.images[:3]
    mask = central_block_mask(tiny_dataset.image_shape)
    mean_image = tiny_dataset.images.mean(axis=0)
    start = start_images(images, mask, fill=mean_image)
    np.testing.assert_array_equal(start[:, mask], np.broadcast_to(mean_image[mask], (3, mask.sum())))
    np.testing.assert_array_equal(start[:, ~mask], images[:, ~mask])
    with pytest.raises(AtlasError, match="boolean"):
        start_images(images, mask.astype(int))
    with pytest.raises(AtlasError, match="mask"):
        start_images(images, np.zeros((5, 5), dtype=bool))


@pytest.mark.parametrize("kind", ["vae", "ae"])
@pytest.mark.parametrize("method", METHODS)
def test_an_unmasked_image_comes_back_unchanged(models, tiny_dataset, kind, method):
    images = tiny_dataset.images[:6]
    completed = METHODS[method](models[kind], images, np.zeros(tiny_dataset.image_shape, dtype=bool))
    np.testing.assert_array_equal(completed, images)
    some = random_pixel_mask(tiny_dataset.image_shape, len(images), rng=np.random.default_rng(0))
    some[[0, 3]] = False  # two unmasked images in a batch that is imputed
    completed = METHODS[method](models[kind], images, some, n_iterations=2) if method == "iterative" else \
        METHODS[method](models[kind], images, some, n_steps=5)
    np.testing.assert_array_equal(completed[[0, 3]], images[[0, 3]])
    assert not np.array_equal(completed[1], images[1])


@pytest.mark.parametrize("kind", ["vae", "ae"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mask_kind", ["central_block", "random_pixels"])
def test_imputation_lowers_the_missing_pixel_error_of_the_start_fill(models, tiny_dataset, kind, method, mask_kind):
    images = tiny_dataset.images
    missing = make_mask(mask_kind, tiny_dataset.image_shape, len(images), rng=np.random.default_rng(0))
    completed = METHODS[method](models[kind], images, missing)
    start_error = missing_pixel_rmse(images, start_images(images, missing), missing)
    error = missing_pixel_rmse(images, completed, missing)
    assert error.mean() < 0.97 * start_error.mean()  # the 2-epoch tiny models gain about 7 %
    np.testing.assert_array_equal(completed[~missing], images[~missing])
    np.testing.assert_array_equal(METHODS[method](models[kind], images, missing), completed)


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_optimisation_sees_only_the_observed_pixels(models, tiny_dataset, kind):
    model, images = models[kind], tiny_dataset.images[:8]
    missing = random_pixel_mask(tiny_dataset.image_shape, len(images), rng=np.random.default_rng(2))
    one_round = impute_iterative(model, images, missing, n_iterations=1)
    np.testing.assert_allclose(impute_optimise(model, images, missing, n_steps=0), one_round, atol=1e-6)
    everything = np.ones(tiny_dataset.image_shape, dtype=bool)  # nothing observed: no likelihood gradient at all
    np.testing.assert_allclose(impute_optimise(model, images, everything, n_steps=20),
                               impute_iterative(model, images, everything, n_iterations=1), atol=1e-6)
    reference = impute_optimise(model, images, missing, n_steps=10)
    rebatched = impute_optimise(model, images, missing, n_steps=10, batch_size=3)
    np.testing.assert_allclose(rebatched, reference, atol=1e-5)
    with torch.inference_mode():  # a caller without gradients
        np.testing.assert_array_equal(impute_optimise(model, images, missing, n_steps=10), reference)


def test_the_prior_pulls_an_unconstrained_code_to_the_origin(models, tiny_dataset):
    model, images = models["vae"], tiny_dataset.images[:4]
    everything = np.ones(tiny_dataset.image_shape, dtype=bool)
    completed = impute_optimise(model, images, everything, n_steps=300, learning_rate=0.05, use_prior=True)
    origin = decode(model, np.zeros((1, model.latent_dim)))
    start = impute_iterative(model, images, everything, n_iterations=1)
    assert np.abs(completed - origin).max() < 0.1 * np.abs(start - origin).max()


def test_missing_pixel_rmse_known_answer():
    truth = np.zeros((2, 2, 2), dtype=np.float32)
    completed = np.array([[[3.0, 4.0], [9.0, 9.0]], [[1.0, 1.0], [1.0, 1.0]]])
    missing = np.array([[[True, True], [False, False]], [[False, False], [False, False]]])
    rmse = missing_pixel_rmse(truth, completed, missing)
    assert rmse[0] == pytest.approx(np.sqrt(12.5))
    assert np.isnan(rmse[1])


def test_factor_errors_known_answer():
    truth = np.array([[2.0, 1.0, 0.5, 2.0]])
    found = np.array([[3.0, 0.5, 0.2, 20.0]])
    errors = factor_errors(truth, found, ("var_x", "var_y", "rho", "df"))
    assert {k: float(v[0]) for k, v in errors.items()} == pytest.approx(
        {"var_x": 0.5, "var_y": 0.5, "rho": 0.3, "df": 1.0})


def test_scores_of_the_true_images_are_zero_through_the_real_oracle(tiny_dataset):
    images, factors = tiny_dataset.images, tiny_dataset.factors
    missing = central_block_mask(tiny_dataset.image_shape)
    oracle = HeatmapOracle.for_dataset(tiny_dataset)

    def recover(x):
        return oracle.verdict(x, novelty=False)

    scores = imputation_scores(images, images, missing, factors, tiny_dataset.factor_names, recover)
    assert scores["missing_rmse"]["max"] == 0.0
    assert scores["missing_fraction"] == pytest.approx(0.25)
    assert all(summary["max"] < 1e-4 for summary in scores["factor_errors"].values())
    assert scores["valid"]["fraction"] == 1.0
    start = start_images(images, missing)
    worse = imputation_scores(images, start, missing, factors, tiny_dataset.factor_names, recover)
    assert worse["factor_errors"]["var_x"]["median"] > 0.05
    assert worse["valid"]["fraction"] < 0.5
    plain = imputation_scores(images, images, missing, factors, tiny_dataset.factor_names, lambda x: factors)
    assert "valid" not in plain and plain["factor_errors"]["rho"]["max"] == 0.0
    with pytest.raises(AtlasError, match="true_factors"):
        imputation_scores(images, images, missing, recover=oracle.recover)
