"""`latent-atlas oracle` on images made independently of the project (scipy densities), and its bad input."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from scipy.stats import multivariate_normal, multivariate_t

from latent_atlas.cli import main
from latent_atlas.config import DataConfig
from latent_atlas.data import make_dataset

from .conftest import tiny_data_config

AXIS = np.linspace(-3.0, 3.0, 36)


def density_image(var_x, var_y, rho, axis=AXIS, mean=(0.0, 0.0), df=None) -> np.ndarray:
    """scipy's density on the grid (x along columns, y along rows), divided by its grid maximum."""
    cov_xy = rho * np.sqrt(var_x * var_y)
    cov = [[var_x, cov_xy], [cov_xy, var_y]]
    dist = multivariate_normal(mean, cov) if df is None else multivariate_t(mean, cov, df=df)
    x, y = np.meshgrid(axis, axis)
    density = dist.pdf(np.stack([x.ravel(), y.ravel()], axis=1)).reshape(x.shape)
    return density / density.max()


def run_cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def read_rows(path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def flags(rows, column) -> list[bool]:
    return [{"true": True, "false": False}[row[column]] for row in rows]


def test_clean_in_range_heatmaps_are_valid_and_out_of_box_ones_are_shape_ok_but_out_of_range(capsys, tmp_path):
    rng = np.random.default_rng(11)
    factors = np.column_stack([rng.uniform(0.1, 4.9, 12), rng.uniform(0.1, 4.9, 12), rng.uniform(-0.95, 0.85, 12)])
    outside = [(0.02, 4.9, 0.0), (20.0, 20.0, 0.0), (1.0, 1.0, 0.99)]
    images = np.stack([density_image(*f) for f in [*factors, *outside]])
    path = tmp_path / "images.npz"
    np.savez(path, images=images.astype(np.float32))
    code, out, err = run_cli(capsys, "oracle", path, "-o", tmp_path / "verdicts.csv")
    assert code == 0, err
    assert "15 images" in out and "shape_ok 1.000, in_range 0.800, valid 0.800" in out
    rows = read_rows(tmp_path / "verdicts.csv")
    assert [int(row["index"]) for row in rows] == list(range(15))
    assert flags(rows, "valid") == [True] * 12 + [False] * 3
    assert flags(rows, "shape_ok") == [True] * 15
    assert flags(rows, "in_range") == [True] * 12 + [False] * 3
    assert [row["failure"] for row in rows] == [""] * 12 + ["range"] * 3
    recovered = np.array([[float(row[name]) for name in ("var_x", "var_y", "rho")] for row in rows])
    np.testing.assert_allclose(recovered, [*factors, *outside], rtol=1e-4, atol=1e-5)
    train = make_dataset(DataConfig())
    nearest = np.array([int(row["nearest_index"]) for row in rows])
    assert np.isin(nearest, train.train_idx).all()
    flat = train.images[train.train_idx].reshape(len(train.train_idx), -1).astype(np.float64)
    brute = [np.linalg.norm(flat - image.astype(np.float32).ravel(), axis=1).min() for image in images]
    np.testing.assert_allclose([float(row["novelty"]) for row in rows], brute, rtol=1e-6)


def test_visibly_corrupted_images_are_not_shape_ok(capsys, tmp_path):
    rng = np.random.default_rng(12)
    x, y = np.meshgrid(AXIS, AXIS)
    two_blobs = [np.maximum(density_image(0.3, 0.3, 0.0, mean=(-1.2, 0.0)), density_image(0.3, 0.3, 0.0, mean=(1.2, 0.0))),
                 density_image(0.4, 0.2, 0.3, mean=(0.0, -1.0)) + density_image(0.4, 0.2, 0.3, mean=(0.0, 1.0))]
    radius = np.sqrt(x * x + y * y)
    rings = [np.exp(-((radius - 1.5) ** 2) / (2 * 0.3**2)), np.exp(-((np.sqrt(x * x / 2 + y * y) - 1.0) ** 2) / 0.1)]
    noisy = [density_image(1.0, 0.5, 0.2) + rng.normal(0.0, 0.1, x.shape), density_image(3.0, 2.0, -0.4)
             + rng.normal(0.0, 0.1, x.shape)]
    shifted = [density_image(0.5, 0.5, 0.0, mean=(1.0, 0.5)), density_image(0.2, 1.5, 0.5, mean=(-0.8, 0.0))]
    images = np.stack([image / image.max() for image in [*two_blobs, *rings, *shifted]] + noisy)
    path = tmp_path / "corrupt.npz"
    np.savez(path, images=images)
    code, out, err = run_cli(capsys, "oracle", path, "-o", tmp_path / "verdicts.csv")
    assert code == 0, err
    rows = read_rows(tmp_path / "verdicts.csv")
    assert flags(rows, "shape_ok") == [False] * 8
    assert flags(rows, "valid") == [False] * 8
    assert all(row["failure"] in ("shape", "shape+range") for row in rows)
    assert "shape_ok 0.000" in out


def test_a_student_t_dataset_sets_the_family_the_box_and_the_reference(capsys, tmp_path, tiny_t_dataset):
    data = tmp_path / "tiny_t.npz"
    tiny_t_dataset.save(data)
    axis = tiny_t_dataset.axis
    images = np.stack([density_image(0.5, 1.8, 0.2, axis, df=2.0), density_image(2.0, 0.4, -0.5, axis, df=200.0),
                       density_image(1.0, 1.0, 0.0, axis, df=1.0),  # Cauchy: heavier than any data -> df out of range
                       density_image(1.0, 1.0, 0.0, axis, df=1e6)])  # lighter than 200: indistinguishable, in range
    path = tmp_path / "t.npz"
    np.savez(path, images=images)
    code, out, err = run_cli(capsys, "oracle", path, "--data", data, "-o", tmp_path / "verdicts.csv")
    assert code == 0, err
    rows = read_rows(tmp_path / "verdicts.csv")
    assert list(rows[0])[:5] == ["index", "var_x", "var_y", "rho", "df"]
    assert flags(rows, "shape_ok") == [True] * 4
    assert flags(rows, "in_range") == [True, True, False, True]
    assert float(rows[2]["df"]) == pytest.approx(1.0, rel=1e-3)
    assert all(int(row["nearest_index"]) in tiny_t_dataset.train_idx for row in rows)
    assert "student_t oracle" in out


def test_an_explicit_shape_threshold_and_a_dataset_file_as_input(capsys, tmp_path, tiny_dataset_file, tiny_dataset):
    code, out, err = run_cli(capsys, "oracle", tiny_dataset_file, "--data", tiny_dataset_file, "--family", "gaussian",
                             "--shape-threshold", "0.5", "-o", tmp_path / "v.csv")
    assert code == 0, err
    rows = read_rows(tmp_path / "v.csv")
    assert len(rows) == len(tiny_dataset) and "shape threshold 0.5;" in out
    assert flags(rows, "valid") == [True] * len(tiny_dataset)
    train = set(tiny_dataset.train_idx.tolist())
    for n, row in enumerate(rows):  # every training image is its own nearest neighbour
        if n in train:
            assert int(row["nearest_index"]) == n and float(row["novelty"]) == 0.0


def bad_inputs(tmp_path, tiny_dataset_file):
    x = np.zeros((2, 36, 36))
    files = {
        "no_images.npz": {"pictures": x},
        "rank.npz": {"images": np.zeros((36, 36))},
        "nan.npz": {"images": np.where(np.eye(36, dtype=bool), np.nan, 0.0)[None]},
        "grid.npz": {"images": np.zeros((2, 12, 12))},
        "objects.npz": {"images": np.array([None, 1], dtype=object)},
        "text.npz": {"images": np.array(["a", "b"])},
    }
    for name, arrays in files.items():
        np.savez(tmp_path / name, **arrays)
    (tmp_path / "garbage.npz").write_bytes(b"this is not a zip archive")
    np.save(tmp_path / "single.npy", x)
    (tmp_path / "table.npz").write_text("a,b\n1,2\n")  # a CSV under the wrong name: not a pickle either
    np.savez(tmp_path / "none.npz", images=np.zeros((0, 36, 36)))
    good = tmp_path / "good.npz"
    np.savez(good, images=x)
    return [
        (["oracle", tmp_path / "no_images.npz"], "no 'images' array"),
        (["oracle", tmp_path / "rank.npz"], "shape (N, H, W)"),
        (["oracle", tmp_path / "nan.npz"], "NaN or infinite"),
        (["oracle", tmp_path / "grid.npz"], "12x12 but the grid"),
        (["oracle", tmp_path / "objects.npz"], "pickled Python objects, which latent-atlas never loads"),
        (["oracle", tmp_path / "text.npz"], "must be numbers"),
        (["oracle", tmp_path / "garbage.npz"], "not a readable .npz"),
        (["oracle", tmp_path / "single.npy"], "a single .npy array, not an .npz archive"),
        (["oracle", tmp_path / "table.npz"], "neither a zip archive nor a .npy file"),
        (["oracle", tmp_path / "none.npz"], "no images"),
        (["oracle", good, "--data", tmp_path / "single.npy"], "a single .npy array"),
        (["oracle", tmp_path / "missing.npz"], "not found"),
        (["oracle", good, "--data", tiny_dataset_file, "--family", "student_t"], "conflicts with --data"),
        (["oracle", good, "--data", tiny_dataset_file], "36x36 but the grid"),
        (["oracle", good, "--data", tmp_path / "garbage.npz"], "not a readable .npz"),
        (["oracle", good, "--shape-threshold", "-1"], "positive"),
        (["oracle", good, "--shape-threshold", "nan"], "positive"),
        (["oracle", good, "--family", "cauchy"], "invalid choice"),
    ]


def test_bad_input_exits_2_with_one_line_and_writes_nothing(capsys, tmp_path, tiny_dataset_file):
    existing = tmp_path / "existing.csv"
    existing.write_text("keep me\n")
    for argv, needle in bad_inputs(tmp_path, tiny_dataset_file):
        for output in (tmp_path / "new.csv", existing):
            code, out, err = run_cli(capsys, *argv, "-o", output)
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and needle in lines[0], (argv, err)
            assert lines[0].startswith("latent-atlas oracle: error:") and "Traceback" not in err
            assert not (tmp_path / "new.csv").exists()
            assert existing.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".csv" or p.name.endswith(".tmp")) == [
        "existing.csv"]


def test_an_output_folder_is_refused(capsys, tmp_path):
    path = tmp_path / "images.npz"
    np.savez(path, images=np.zeros((1, 36, 36)))
    code, _, err = run_cli(capsys, "oracle", path, "-o", tmp_path)
    assert code == 2 and "is a folder" in err


def test_tiny_grid_default_box_comes_from_the_dataset_config(capsys, tmp_path, tiny_dataset_file):
    config = tiny_data_config()
    axis = np.linspace(-3.0, 3.0, config.grid_size)
    images = np.stack([density_image(1.0, 1.0, 0.0, axis), density_image(4.9, 4.9, 0.0, axis)])  # 4.9: outside 0.3..2.5
    path = tmp_path / "tiny_images.npz"
    np.savez(path, images=images)
    code, out, err = run_cli(capsys, "oracle", path, "--data", tiny_dataset_file, "-o", tmp_path / "v.csv")
    assert code == 0, err
    rows = read_rows(tmp_path / "v.csv")
    assert flags(rows, "in_range") == [True, False] and flags(rows, "shape_ok") == [True, True]
