"""The factor compass: the finite-difference stencil, exact gradients on known functions and on heatmaps whose
factors are known functions of the code, and what it says where decodes are not heatmaps."""

from __future__ import annotations

import numpy as np
import pytest

from latent_atlas.config import DataConfig
from latent_atlas.data.heatmaps import grid_axis, render_heatmaps
from latent_atlas.errors import AtlasError
from latent_atlas.explorer.compass import central_gradient, compass_from, in_units, stencil, unit_name
from latent_atlas.oracle import HeatmapOracle
from latent_atlas.verdicts import FactorBox

CONFIG = DataConfig(grid_size=24)


@pytest.fixture(scope="module")
def oracle() -> HeatmapOracle:
    return HeatmapOracle(grid_axis(CONFIG.grid_size, CONFIG.extent), box=FactorBox.from_config(CONFIG),
                         shape_threshold=0.05)


def test_the_stencil_is_the_code_then_plus_and_minus_each_axis():
    codes = stencil(np.array([1.0, 2.0]), 0.5)
    np.testing.assert_array_equal(codes, [[1, 2], [1.5, 2], [0.5, 2], [1, 2.5], [1, 1.5]])
    with pytest.raises(AtlasError, match="positive"):
        stencil(np.zeros(3), 0.0)
    with pytest.raises(AtlasError, match="finite"):
        stencil(np.array([np.nan, 0.0]), 0.1)


def test_central_differences_are_exact_for_quadratics():
    rng = np.random.default_rng(0)
    linear, quadratic = rng.normal(size=(2, 4)), rng.normal(size=(2, 4, 4))  # two factors over a 4-D code
    z = np.round(rng.normal(size=4) * 64) / 64  # z and z +- 0.25 are exact in float32, the stencil's precision

    def f(codes: np.ndarray) -> np.ndarray:  # (N, 4) -> (N, 2)
        return codes @ linear.T + np.einsum("ni,kij,nj->nk", codes, quadratic, codes)

    gradient = central_gradient(f(stencil(z, 0.25)), stencil(z, 0.25))  # (2, 4)
    expected = linear + np.einsum("kij,j->ki", quadratic + quadratic.transpose(0, 2, 1), z)
    np.testing.assert_allclose(gradient, expected, atol=1e-12)


def test_the_stencil_is_what_the_decoder_gets_and_the_gradient_uses_the_steps_taken():
    z = np.array([1.0, 3.0])
    codes = stencil(z, 1e-4)  # 1 + 1e-4 is not a float32: the step taken differs from the one asked by ~1e-4 of it
    np.testing.assert_array_equal(codes, codes.astype(np.float32))
    taken = np.diag(codes[1::2] - codes[2::2])
    assert not np.allclose(taken, 2e-4, rtol=1e-9, atol=0) and np.allclose(taken, 2e-4, rtol=1e-3)
    slope = np.array([[2.0, -3.0]])
    np.testing.assert_allclose(central_gradient(codes @ slope.T, codes), slope, rtol=1e-12)  # exact for a line
    with pytest.raises(AtlasError, match="too small for this code in float32"):
        stencil(np.array([1000.0, 0.0]), 1e-6)  # 1000 +- 1e-6 rounds back to 1000 in float32


def test_units_are_log_variances_rho_and_log_df():
    factors = np.array([[2.0, 0.5, -0.3, 200.0]])
    np.testing.assert_allclose(in_units(("var_x", "var_y", "rho", "df"), factors),
                               [[np.log(2.0), np.log(0.5), -0.3, np.log(200.0)]])
    assert [unit_name(n) for n in ("var_x", "rho", "df")] == ["log var_x", "rho", "log df"]


def decoder(codes: np.ndarray) -> np.ndarray:
    """A stand-in decoder whose factors are known: log var_x = z0, log var_y = z1 / 2, rho = 0.6 tanh(z2)."""
    return render_heatmaps(np.exp(codes[:, 0]), np.exp(0.5 * codes[:, 1]), 0.6 * np.tanh(codes[:, 2]),
                           grid_axis(CONFIG.grid_size, CONFIG.extent))


def test_the_compass_recovers_the_gradient_of_known_factors(oracle):
    z, step = np.array([0.1, -0.4, 0.3]), 0.02
    found = compass_from(z, step, oracle.verdict(decoder(stencil(z, step)), novelty=False))
    assert found.status == "ok" and found.units == ["log var_x", "log var_y", "rho"]
    np.testing.assert_allclose(found.value, [0.1, -0.2, 0.6 * np.tanh(0.3)], atol=1e-6)
    expected = np.diag([1.0, 0.5, 0.6 / np.cosh(0.3) ** 2])  # (K, D)
    np.testing.assert_allclose(found.gradient, expected, atol=2e-4)


def test_no_gradient_where_a_decode_is_not_a_heatmap(oracle):
    z, step = np.zeros(3), 0.02
    images = decoder(stencil(z, step))
    images[4] = np.random.default_rng(0).uniform(size=images[4].shape)  # one neighbour is noise
    found = compass_from(z, step, oracle.verdict(images, novelty=False))
    assert found.status == "shape" and found.gradient is None
    assert "1 of the 7 decodes" in found.message() and "neighbours" in found.message()
    images[0] = images[4]
    assert "the decode itself" in compass_from(z, step, oracle.verdict(images, novelty=False)).message()


def test_heatmaps_outside_the_data_range_keep_their_gradient_with_a_warning(oracle):
    z, step = np.array([2.0, 0.0, 0.0]), 0.02  # var_x = e^2 = 7.4, beyond the data's 4.9
    found = compass_from(z, step, oracle.verdict(decoder(stencil(z, step)), novelty=False))
    assert found.status == "range" and "outside the data's range" in found.message()
    assert found.gradient[0, 0] == pytest.approx(1.0, abs=1e-3)
