import json

import numpy as np
import pytest
from scipy.stats import multivariate_normal, multivariate_t

from latent_atlas.config import FactorRange
from latent_atlas.data import load_dataset, make_dataset, render_heatmaps
from latent_atlas.errors import AtlasError
from latent_atlas.io import npz_bytes

from .conftest import tiny_data_config


def scipy_heatmaps(factors: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Independent reference: scipy's densities on the grid (x along columns), divided by their maximum."""
    x, y = np.meshgrid(axis, axis)  # x varies along columns
    points = np.stack([x.ravel(), y.ravel()], axis=1)
    out = np.empty((len(factors), len(axis), len(axis)))
    for n, row in enumerate(factors):
        var_x, var_y, rho = row[:3]
        cov = [[var_x, rho * np.sqrt(var_x * var_y)], [rho * np.sqrt(var_x * var_y), var_y]]
        dist = multivariate_normal([0, 0], cov) if len(row) == 3 else multivariate_t([0, 0], cov, df=row[3])
        density = dist.pdf(points).reshape(len(axis), len(axis))
        out[n] = density / density.max()
    return out


def test_gaussian_dataset_has_the_seed_size_and_matches_scipy(gaussian_full):
    ds = gaussian_full
    assert ds.images.shape == (11_875, 36, 36) and ds.images.dtype == np.float32
    assert ds.factors.shape == (11_875, 3) and ds.factor_names == ("var_x", "var_y", "rho")
    np.testing.assert_array_equal(ds.axis, np.linspace(-3, 3, 36))
    reference = scipy_heatmaps(ds.factors, ds.axis)
    np.testing.assert_allclose(ds.images, reference, rtol=0, atol=2e-7)
    # Every combination appears exactly once.
    assert len(np.unique(ds.factors, axis=0)) == 11_875
    assert ds.images.max(axis=(1, 2)).min() == 1.0


def test_student_t_dataset_matches_scipy(student_t_full):
    ds = student_t_full
    assert ds.images.shape == (11_875, 36, 36)
    assert ds.factor_names == ("var_x", "var_y", "rho", "df")
    np.testing.assert_allclose(ds.images, scipy_heatmaps(ds.factors, ds.axis), rtol=0, atol=2e-7)


def test_student_t_df_follows_the_seed_rule(student_t_full):
    var_sum = student_t_full.factor("var_x") + student_t_full.factor("var_y")
    df = student_t_full.factor("df")
    assert set(np.unique(df)) == {2.0, 200.0}
    excess = var_sum**2 - 20  # df is 2 where excess > l, l ~ U(0, 10)
    assert np.all(df[excess > 10] == 2.0)
    assert np.all(df[excess <= 0] == 200.0)
    # In between, P(df = 2) = excess / 10: check the frequency in bins against it.
    middle = (excess > 0) & (excess <= 10)
    bins = np.digitize(excess[middle], [2.5, 5.0, 7.5])
    for b in range(4):
        chosen = bins == b
        expected = np.mean(excess[middle][chosen] / 10)
        observed = np.mean(df[middle][chosen] == 2.0)
        assert abs(observed - expected) < 4 * np.sqrt(expected * (1 - expected) / chosen.sum()) + 0.01


def test_orientation_x_along_columns():
    axis = np.linspace(-3, 3, 36)
    wide_in_x = render_heatmaps([4.0], [0.2], [0.0], axis)[0]
    # Spread along columns (x) is larger: the row through the centre is wider than the column.
    assert wide_in_x[17].sum() > 3 * wide_in_x[:, 17].sum()
    tilted = render_heatmaps([1.0], [1.0], [0.8], axis)[0]
    # Positive correlation puts mass on the diagonal x = y: (row i, col i), row 0 at y = -3.
    assert tilted[5, 5] > 10 * tilted[5, 30]


def test_same_config_same_bytes_and_seed_changes_split(tmp_path):
    config = tiny_data_config(kind="student_t")
    a, b = make_dataset(config), make_dataset(config)
    a.save(tmp_path / "a.npz")
    b.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    other = make_dataset(tiny_data_config(kind="student_t", seed=1))
    assert not np.array_equal(other.test_idx, a.test_idx)
    assert other.content_hash != a.content_hash


def test_split_is_a_partition_with_the_requested_fraction(tiny_dataset):
    ds = tiny_dataset
    both = np.concatenate([ds.train_idx, ds.test_idx])
    assert sorted(both.tolist()) == list(range(len(ds)))
    assert len(ds.test_idx) == round(0.2 * len(ds))


def test_random_sampling_stays_in_range():
    config = tiny_data_config(sampling="random", n_samples=500, var_x=FactorRange(start=0.5, stop=2.0, step=0.5))
    ds = make_dataset(config)
    assert len(ds) == 500
    assert ds.factor("var_x").min() >= 0.5 and ds.factor("var_x").max() <= 2.0
    assert len(np.unique(ds.factor("var_x"))) == 500  # continuous draws, not the grid
    assert ds.factor("rho").min() >= -0.6 and ds.factor("rho").max() <= 0.7


def test_save_load_round_trip_without_pickle(tmp_path, tiny_t_dataset):
    path = tmp_path / "t.npz"
    tiny_t_dataset.save(path)
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == {"images", "factors", "factor_names", "train_idx", "test_idx", "metadata"}
        assert archive["factor_names"].dtype.kind == "U"
        metadata = json.loads(str(archive["metadata"]))
    assert metadata["content_hash"] == tiny_t_dataset.content_hash
    assert metadata["config"]["kind"] == "student_t"
    loaded = load_dataset(path)
    np.testing.assert_array_equal(loaded.images, tiny_t_dataset.images)
    np.testing.assert_array_equal(loaded.factors, tiny_t_dataset.factors)
    assert loaded.config == tiny_t_dataset.config


def test_corrupt_and_foreign_files_are_refused(tmp_path, tiny_dataset):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip archive")
    with pytest.raises(AtlasError, match="not a readable .npz"):
        load_dataset(garbage)
    with pytest.raises(AtlasError, match="dataset not found"):
        load_dataset(tmp_path / "missing.npz")
    foreign = tmp_path / "foreign.npz"
    foreign.write_bytes(npz_bytes({"x": np.zeros(3)}))
    with pytest.raises(AtlasError, match="missing images"):
        load_dataset(foreign)
    tampered = tiny_dataset.arrays()
    tampered["images"] = tampered["images"].copy()
    tampered["images"][0, 0, 0] += 0.5
    tampered["metadata"] = np.asarray(json.dumps(tiny_dataset.metadata))
    (tmp_path / "tampered.npz").write_bytes(npz_bytes(tampered))
    with pytest.raises(AtlasError, match="corrupt"):
        load_dataset(tmp_path / "tampered.npz")
