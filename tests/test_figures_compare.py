import numpy as np
import pytest

from latent_atlas.analysis.compare import nearest_neighbour_distances, worst_examples
from latent_atlas.analysis.disentanglement import factor_correlations
from latent_atlas.report import figures_compare as figures

from .figure_checks import assert_renders


@pytest.fixture(scope="module")
def errors():
    rng = np.random.default_rng(0)
    return {"vae": rng.gamma(5.0, 0.2, 60), "ae": np.r_[rng.gamma(5.0, 0.1, 55), rng.uniform(3, 5, 5)]}


def test_error_histograms_mark_mean_median_and_p99(errors):
    fig = figures.error_histograms(errors)
    assert_renders(fig, 1)
    ax = fig.axes[0]
    vertical = sorted(round(line.get_xdata()[0], 9) for line in ax.lines if len(line.get_xdata()) == 2)
    expected = sorted(round(float(f(e)), 9) for e in errors.values()
                      for f in (np.mean, np.median, lambda v: np.percentile(v, 99)))
    assert vertical == expected
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"vae", "ae", "mean", "median", "p99"}


def test_worst_examples_figure_has_two_rows_per_model(errors, tiny_dataset):
    images = tiny_dataset.images
    n = len(images)
    errors = {name: e[:n] for name, e in errors.items()}
    reconstructions = {"vae": images[::-1], "ae": np.clip(images + 0.1, 0, 1)}
    indices = {"vae": worst_examples(errors["vae"], 4), "ae": worst_examples(errors["ae"], 3)}
    fig = figures.worst_examples_figure(images, reconstructions, indices, errors, extent=3.0)
    assert_renders(fig, 2 * 2 * 4)
    first = fig.axes[0]
    assert first.images[0].origin == "lower" and first.images[0].get_extent() == [-3.0, 3.0, -3.0, 3.0]
    assert first.get_title() == f"error {errors['vae'][indices['vae'][0]]:.2f}"


def test_density_figure(errors):
    rng = np.random.default_rng(1)
    distances = {"vae": nearest_neighbour_distances(rng.normal(size=(200, 3))),
                 "ae": nearest_neighbour_distances(rng.normal(size=(50, 3)))}
    fig = figures.density_figure(distances)
    assert_renders(fig, 2)
    cdf = fig.axes[1].lines[0]
    assert cdf.get_ydata()[-1] == pytest.approx(1.0)


def test_correlation_heatmap_shows_every_value():
    rng = np.random.default_rng(3)
    table = factor_correlations(rng.normal(size=(50, 3)), rng.normal(size=(50, 4)), ("var_x", "var_y", "rho", "df"))
    fig = figures.correlation_heatmap(table, title="VAE")
    assert_renders(fig, 2)  # the heatmap and its colour bar
    ax = fig.axes[0]
    assert ax.get_title() == "VAE" and len(ax.texts) == 12
    assert [t.get_text() for t in ax.get_xticklabels()] == ["var_x", "var_y", "rho", "df"]
