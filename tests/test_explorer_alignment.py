"""Aligning two latent spaces through shared images: known maps recovered, errors measured as documented."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from latent_atlas.errors import AtlasError
from latent_atlas.explorer.alignment import METHODS, CodeAlignment, code_spacing, score_map


def split(n: int, rng: np.random.Generator, test: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    n_test = int(round(test * n))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def grid_codes(side: int, step: float = 0.1) -> np.ndarray:
    axis = step * np.arange(side)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)  # (side^3, 3)


def test_code_spacing_is_the_median_nearest_neighbour_distance():
    assert code_spacing(grid_codes(6, step=0.1)) == pytest.approx(0.1)
    assert code_spacing(np.array([[0.0], [1.0], [3.0]])) == pytest.approx(1.0)  # distances 1, 1, 2
    with pytest.raises(AtlasError, match="two codes"):
        code_spacing(np.zeros((1, 3)))


def test_errors_are_measured_in_the_targets_code_spacings():
    target = grid_codes(4)
    shifted = target + np.array([0.03, 0.04, 0.0])  # every prediction off by 0.05 = half a spacing
    score = score_map("affine", shifted, target, spacing=0.1)
    assert score.median_error == pytest.approx(0.5) and score.p90_error == pytest.approx(0.5)
    assert score.n == len(target)
    assert score_map("affine", target, target, 0.1).r2 == 1.0


def test_procrustes_recovers_a_rotation_with_scale_and_shift_exactly():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 3))
    rotation = Rotation.from_euler("xyz", [30, -50, 110], degrees=True).as_matrix()
    b = 2.5 * a @ rotation + np.array([1.0, -2.0, 0.5])
    train, test = split(len(a), rng)
    alignment = CodeAlignment(method="procrustes").fit(a, b, train, test)
    assert alignment.estimator_.scale_ == pytest.approx(2.5)
    np.testing.assert_allclose(alignment.estimator_.rotation_, rotation, atol=1e-10)
    fresh = rng.normal(size=(5, 3))
    np.testing.assert_allclose(alignment.transform(fresh), 2.5 * fresh @ rotation + [1.0, -2.0, 0.5], atol=1e-9)
    assert alignment.score_.r2 == pytest.approx(1.0) and alignment.score_.median_error < 1e-8


def test_an_affine_map_between_different_dimensions_is_recovered_and_procrustes_is_not_offered():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 3))
    matrix, offset = rng.normal(size=(3, 5)), rng.normal(size=5)
    b = a @ matrix + offset  # (400, 5)
    train, test = split(len(a), rng)
    alignment = CodeAlignment().fit(a, b, train, test)
    assert set(alignment.scores_) == set(METHODS) - {"procrustes"}
    assert alignment.scores_["affine"].r2 == pytest.approx(1.0)
    assert alignment.scores_["affine"].median_error < 1e-8
    np.testing.assert_allclose(alignment.transform(a[:3]), b[:3], atol=1e-6)  # whichever fits, exact here
    with pytest.raises(AtlasError, match="cannot map 3-D codes to 5-D"):
        CodeAlignment(method="procrustes").fit(a, b, train, test)


def test_a_nonlinear_map_is_chosen_when_it_predicts_held_out_codes_better():
    rng = np.random.default_rng(2)
    a = grid_codes(14, step=1 / 13)  # (2744, 3) in the unit cube
    b = np.column_stack([np.sin(3 * a[:, 0]), a[:, 1] ** 2 + a[:, 2], np.cos(2 * a[:, 2]) * a[:, 0]])
    train, test = split(len(a), rng)
    alignment = CodeAlignment(seed=0).fit(a, b, train, test)
    assert alignment.method_ == max(alignment.selection_, key=alignment.selection_.get)
    assert alignment.method_ in ("knn", "affine_knn")
    chosen, affine = alignment.score_, alignment.scores_["affine"]
    assert chosen.r2 > affine.r2 and chosen.median_error < affine.median_error / 3
    assert chosen.r2 > 0.99


def test_support_says_how_far_a_code_is_from_the_source_codes():
    a = grid_codes(5, step=0.1)
    alignment = CodeAlignment(method="affine").fit(a, a + 1.0, np.arange(100), np.arange(100, 125))
    np.testing.assert_allclose(alignment.support(a[:4]), 0.0, atol=1e-12)
    far = a[:1] + np.array([[0.0, 0.0, -1.0]])  # 1.0 below the lowest layer: 10 spacings
    assert alignment.support(far)[0] == pytest.approx(10.0)


def test_fitting_is_reproducible():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(500, 3))
    b = np.tanh(a) @ rng.normal(size=(3, 4))
    train, test = split(len(a), rng)
    first, second = (CodeAlignment(seed=7).fit(a, b, train, test) for _ in range(2))
    assert first.method_ == second.method_ and first.selection_ == second.selection_
    np.testing.assert_array_equal(first.transform(a[:20]), second.transform(a[:20]))


def test_bad_alignment_input_is_an_atlas_error():
    a = np.zeros((10, 3))
    with pytest.raises(AtlasError, match="one code per image"):
        CodeAlignment().fit(a, np.zeros((9, 3)), np.arange(8), np.arange(8, 9))
    with pytest.raises(AtlasError, match="at least 4 training"):
        CodeAlignment().fit(a, a, np.arange(2), np.arange(2, 4))
    with pytest.raises(AtlasError, match="unknown alignment method"):
        CodeAlignment(method="umap")
