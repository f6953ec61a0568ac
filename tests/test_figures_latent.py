"""Latent-space figures build with the expected panels and traces, and render."""

from __future__ import annotations

from io import BytesIO

import matplotlib
import numpy as np
import pytest
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from latent_atlas.analysis.latents import LatentCodes
from latent_atlas.analysis.paths import LatentPath
from latent_atlas.errors import AtlasError
from latent_atlas.report.figures_latent import (
    image_strip,
    path_overlay,
    projection_grid,
    scatter3d,
)
from tests.test_paths import cone_latents, synthetic_latents

matplotlib.use("Agg")


def renders_png(fig) -> bool:
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    return buffer.getvalue().startswith(b"\x89PNG")


def random_latents(latent_dim: int, n: int = 120) -> LatentCodes:
    rng = np.random.default_rng(latent_dim)
    factors = np.c_[rng.uniform(0.1, 5, n), rng.uniform(0.1, 5, n), rng.uniform(-0.95, 0.95, n)]
    return synthetic_latents(rng.normal(size=(n, latent_dim)), factors)


def two_paths(latent_dim: int) -> list[LatentPath]:
    line = LatentPath("line", np.linspace(np.zeros(latent_dim), np.ones(latent_dim), 5), "a line", {})
    cloud = LatentPath("cloud", np.eye(latent_dim)[:2], "points", {"connected": False})
    return [line, cloud]


def test_projection_grid_has_one_panel_per_axis_pair_and_factor():
    fig = projection_grid(cone_latents(), factors=("rho", "var_diff"))
    panels = [ax for ax in fig.axes if ax.get_xlabel()]
    assert len(panels) == 3 * 2 and len(fig.axes) == len(panels) + 2  # one colour bar per factor (column)
    assert [ax.get_xlabel() + ax.get_ylabel() for ax in panels[::2]] == ["z0z1", "z0z2", "z1z2"]
    assert panels[0].get_title() == "rho" and panels[1].get_title() == "var_diff"
    assert renders_png(fig)


def test_projection_grid_in_five_dimensions_uses_principal_components_unless_pairs_are_given():
    latents = random_latents(5)
    fig = projection_grid(latents, factors=("var_x",))
    assert [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()] == ["PC0", "PC0", "PC1"]
    fig = projection_grid(latents, factors=("var_x", "rho"), axis_pairs=[(3, 4)])
    panels = [ax for ax in fig.axes if ax.get_xlabel()]
    assert [ax.get_xlabel() + ax.get_ylabel() for ax in panels] == ["z3z4", "z3"]  # the row shares its y axis
    np.testing.assert_allclose(np.sort(panels[0].collections[0].get_offsets()[:, 0]), np.sort(latents.codes[:, 3]))
    with pytest.raises(AtlasError, match="axis pair"):
        projection_grid(latents, axis_pairs=[(0, 5)])


def test_image_strip_shows_images_and_one_curve_per_recovered_factor():
    images = np.random.default_rng(0).uniform(size=(6, 12, 12)).astype(np.float32)
    recovered = {"rho": np.linspace(-0.9, 0.9, 6), "var_x": np.full(6, 2.0)}
    valid = np.array([True, True, False, True, True, True])
    fig = image_strip(images, recovered, title="strip", extent=3.0, true_factors={"rho": np.zeros(6)}, valid=valid)
    image_axes = [ax for ax in fig.axes if ax.images]
    curve_axes = [ax for ax in fig.axes if not ax.images]
    assert len(image_axes) == 1 and len(curve_axes) == 2
    strip = image_axes[0]
    assert len(strip.images) == 6 and all(isinstance(shown, AxesImage) for shown in strip.images)
    for i, shown in enumerate(strip.images):  # image i sits above step i of the curves, drawn upright in 0..1
        assert shown.origin == "lower" and shown.get_clim() == (0, 1)
        left, right, bottom, top = shown.get_extent()
        assert left < i < right and (left + right) / 2 == pytest.approx(i) and right - left == pytest.approx(top - bottom)
        np.testing.assert_array_equal(shown.get_array(), images[i])
    frames = [patch for patch in strip.patches if isinstance(patch, Rectangle)]
    assert [round(frame.get_x() + frame.get_width() / 2) for frame in frames] == [2]  # invalid images are framed
    assert strip.get_xlim() == (-0.5, 5.5)
    rho_axis = curve_axes[0]
    np.testing.assert_allclose(rho_axis.lines[0].get_ydata(), recovered["rho"])
    assert len(rho_axis.lines) == 3  # recovered, true, invalid marker
    assert rho_axis.get_xlim() == (-0.5, 5.5) and rho_axis.get_ylabel() == "rho"
    assert fig.get_suptitle() == "strip"
    assert renders_png(fig)


def test_image_strip_without_curves_and_bad_input():
    fig = image_strip(np.zeros((3, 8, 8)))
    assert len(fig.axes) == 1 and len(fig.axes[0].images) == 3 and renders_png(fig)
    with pytest.raises(AtlasError, match="shape"):
        image_strip(np.zeros((3, 8, 8)), {"rho": np.zeros(4)})
    with pytest.raises(AtlasError, match="non-empty"):
        image_strip(np.zeros((8, 8)))


def test_path_overlay_draws_each_path_over_the_codes():
    latents = cone_latents()
    paths = two_paths(3)
    fig = path_overlay(latents, paths, axes=(0, 2), color_by="var_diff")
    ax = fig.axes[0]
    assert len(ax.collections) == 1 and len(ax.collections[0].get_offsets()) == len(latents.codes)
    line, start, cloud = ax.lines  # points that are not a path get no start marker
    np.testing.assert_allclose(line.get_xydata(), paths[0].points[:, [0, 2]])
    assert line.get_linestyle() == "-" and cloud.get_linestyle() == "None"
    np.testing.assert_allclose(start.get_xydata(), paths[0].points[:1, [0, 2]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["line", "cloud"]
    assert renders_png(fig)
    with pytest.raises(AtlasError, match="axes"):
        path_overlay(latents, paths, axes=(1, 1))


@pytest.mark.parametrize("latent_dim", [2, 3, 5])
def test_scatter3d_has_codes_paths_and_a_colour_dropdown(latent_dim):
    latents = random_latents(latent_dim)
    fig = scatter3d(latents, color_by=("rho", "var_diff"), paths=two_paths(latent_dim), max_points=50, seed=1)
    codes, line, cloud = fig.data
    assert len(codes.x) == 50 and line.mode == "lines+markers" and cloud.mode == "markers"
    assert len(line.x) == 5 and len(cloud.x) == 2
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["rho", "var_diff"]
    colours = buttons[1].args[0]["marker.color"][0]
    assert len(colours) == 50 and set(np.round(colours, 4)) <= set(np.round(latents.factor("var_diff"), 4))
    assert np.all(np.asarray(codes.x) == np.round(np.asarray(codes.x), 4).astype(np.float32))
    if latent_dim == 2:
        np.testing.assert_array_equal(codes.z, 0)
    if latent_dim == 3:
        np.testing.assert_allclose(line.z, np.linspace(0, 1, 5), atol=1e-4)  # raw axes, no projection
    assert fig.to_json()


def test_scatter3d_subsample_is_seeded_and_bounded():
    latents = random_latents(3, n=300)
    a, b = scatter3d(latents, max_points=40, seed=7), scatter3d(latents, max_points=40, seed=7)
    np.testing.assert_array_equal(a.data[0].x, b.data[0].x)
    assert len(scatter3d(latents, max_points=1000).data[0].x) == 300
    with pytest.raises(AtlasError, match="colour"):
        scatter3d(latents, color_by=())
