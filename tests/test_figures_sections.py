import numpy as np
import pytest
from matplotlib.colors import to_hex
from scipy.stats import chi

from latent_atlas.errors import AtlasError
from latent_atlas.report import figures_sections as figures
from latent_atlas.report.figures_compare import COLOURS

from .figure_checks import assert_renders, by_gid

RED = COLOURS[1]


def artist(ax, gid: str):
    found = [a for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) == 1, f"{gid}: {len(found)} artists"
    return found[0]


def xy(line) -> np.ndarray:
    return np.asarray(line.get_xydata(), dtype=np.float64)


def band_vertices(ax, gid: str) -> np.ndarray:
    """(n, 2) vertices of a fill_between band."""
    return np.concatenate([path.vertices for path in artist(ax, gid).get_paths()])


def point(level, per_seed, mean=None, low=None, high=None) -> dict:
    return {"level": level, "per_seed": per_seed, "n": len(per_seed), "mean": mean, "sd": None, "low": low,
            "high": high, "confidence": 0.95}


def quantity(label, curve, better=None) -> dict:
    return {"label": label, "source": "generation", "key": "x", "better": better, "curve": curve}


# -- 1-2. curves over a swept setting --------------------------------------------------------------------------


@pytest.fixture()
def dimensions() -> dict:
    return {
        "setting": "model.latent_dim",
        "levels": [2, 4, 16],
        "quantities": {
            "active_units": quantity("active units", [
                point(16, {"0": 5.0, "1": 7.0}, 6.0, 0.0, 12.0),  # out of order: the figure sorts by level
                point(2, {"0": 2.0, "1": 2.0}, 2.0, 2.0, 2.0),
                point(4, {"0": 3.0, "1": None}, 3.0),  # one seed: no interval
            ]),
            "kl_p_q": quantity("KL(p || q)", [point(2, {"0": 0.1, "1": 0.3}, 0.2, 0.1, 0.3),
                                              point(4, {}, None), point(16, {"0": 4.0, "1": 5.0}, 4.5, 4.0, 5.0)],
                               better="lower"),
            "nothing": quantity("never computed", [point(2, {}), point(4, {}), point(16, {})]),
            "prior_valid": quantity("prior valid", [point(2, {"0": 0.9, "1": 0.8}, 0.85, 0.2, 1.5),
                                                    point(4, {"0": 0.7, "1": 0.5}, 0.6, 0.3, 0.9),
                                                    point(16, {"0": 0.2, "1": 0.1}, 0.15, 0.1, 0.2)]),
            "prior_fidelity_auc": quantity("prior AUC", [point(2, {"0": 0.6, "1": 0.62}, 0.61, 0.5, 0.72),
                                                         point(4, {"0": 0.8, "1": 0.84}, 0.82, 0.7, 0.95),
                                                         point(16, {"0": 0.99, "1": 0.97}, 0.98, 0.9, 1.0)]),
            "mixture_valid": quantity("mixture valid", [point(2, {"0": 0.95}, 0.95), point(4, {"0": 0.9}, 0.9),
                                                        point(16, {"0": 0.92}, 0.92)]),
            "mixture_fidelity_auc": quantity("mixture AUC", [point(2, {"0": 0.55}, 0.55), point(4, {"0": 0.52}, 0.52),
                                                             point(16, {"0": 0.58}, 0.58)]),
            "two_stage_valid": quantity("two-stage valid", [point(2, {}), point(4, {}), point(16, {})]),
            "two_stage_fidelity_auc": quantity("two-stage AUC", [point(2, {}), point(4, {}), point(16, {})]),
        },
    }


def test_setting_curves_draws_means_bands_and_seeds_in_level_order(dimensions):
    fig = figures.setting_curves(dimensions, ["active_units", "kl_p_q", "nothing"], ncols=2)
    assert_renders(fig, 3)  # 2 x 2 grid, the empty cell removed
    ax = fig.axes[0]
    np.testing.assert_allclose(xy(artist(ax, "mean")), [[2, 2.0], [4, 3.0], [16, 6.0]])
    np.testing.assert_allclose(xy(artist(ax, "seed/0")), [[2, 2.0], [4, 3.0], [16, 5.0]])
    np.testing.assert_allclose(xy(artist(ax, "seed/1")), [[2, 2.0], [16, 7.0]])  # None at D = 4 left out
    vertices = band_vertices(ax, "band")
    assert not np.isin(4.0, vertices[:, 0])  # no interval at D = 4 (one seed): the band skips it
    assert {tuple(v) for v in vertices} >= {(16.0, 0.0), (16.0, 12.0), (2.0, 2.0)}
    assert ax.get_xscale() == "linear"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "4", "16"]
    assert ax.get_xlabel() == "latent dimension D"
    bottom, top = ax.get_ylim()
    assert 0.0 < bottom < 2.0 and 7.0 < top < 12.0  # the two-seed t band is wider than the points: clipped
    assert artist(ax, "clipped").get_text() == "band clipped"
    assert ax.get_title() == "active units" and ax.get_ylabel() == ""


def test_setting_curves_skips_none_and_marks_empty_quantities(dimensions):
    fig = figures.setting_curves(dimensions, ["kl_p_q", "nothing"])
    kl, empty = fig.axes
    np.testing.assert_allclose(xy(artist(kl, "mean")), [[2, 0.2], [16, 4.5]])
    assert kl.get_ylabel() == "lower is better"
    assert not by_gid(empty, "") and artist(empty, "empty").get_text() == "no values"


def test_setting_curves_puts_beta_on_a_log_axis(dimensions):
    betas = {"setting": "model.beta", "levels": [0.25, 1.0, 8.0], "quantities": {
        "kl": quantity("KL", [point(0.25, {"0": 9.0, "1": 11.0}, 10.0, 8.0, 12.0), point(1.0, {"0": 5.0}, 5.0),
                              point(8.0, {"0": 0.5, "1": 0.7}, 0.6, 0.4, 0.8)])}}
    ax = figures.setting_curves(betas, ["kl"]).axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.25", "1", "8"]
    assert "β" in ax.get_xlabel()
    np.testing.assert_allclose(xy(artist(ax, "mean")), [[0.25, 10.0], [1.0, 5.0], [8.0, 0.6]])
    assert figures.setting_curves(betas, ["kl"], log_x=False).axes[0].get_xscale() == "linear"
    assert figures.setting_curves(dimensions, ["kl_p_q"], log_x=True).axes[0].get_xscale() == "log"


def test_setting_curves_rejects_unknown_names(dimensions):
    with pytest.raises(AtlasError, match="no quantity 'mig'"):
        figures.setting_curves(dimensions, ["mig"])
    with pytest.raises(AtlasError, match="at least one quantity"):
        figures.setting_curves(dimensions, [])


def test_sampler_curves_one_line_per_sampler_with_values_and_the_chance_line(dimensions):
    fig = figures.sampler_curves(dimensions)
    assert_renders(fig, 2)
    valid, auc = fig.axes
    assert sorted(by_gid(valid, "").keys() & {"prior/mean", "mixture/mean", "two_stage/mean", "gaussian/mean"}) == [
        "mixture/mean", "prior/mean"]  # gaussian absent from the aggregate, two_stage all None
    np.testing.assert_allclose(xy(artist(valid, "prior/mean")), [[2, 0.85], [4, 0.6], [16, 0.15]])
    np.testing.assert_allclose(xy(artist(auc, "mixture/mean")), [[2, 0.55], [4, 0.52], [16, 0.58]])
    np.testing.assert_allclose(xy(artist(auc, "prior/seed/1")), [[2, 0.62], [4, 0.84], [16, 0.97]])
    assert not [a for a in auc.get_children() if a.get_gid() == "mixture/band"]  # one seed: no band
    chance = artist(auc, "chance")
    np.testing.assert_allclose(xy(chance)[:, 1], 0.5)
    assert "indistinguishable from the data" in chance.get_label()
    assert to_hex(artist(valid, "prior/mean").get_color()) != to_hex(artist(valid, "mixture/mean").get_color())
    assert fig.legends and "two-stage" not in " ".join(t.get_text() for t in fig.legends[0].get_texts())


def test_sampler_curves_needs_a_sampler_with_values(dimensions):
    with pytest.raises(AtlasError, match="none of the samplers"):
        figures.sampler_curves(dimensions, samplers=("two_stage", "gaussian"))


# -- 3-4. the soap bubble and the KL spectrum ------------------------------------------------------------------


def norms(dim: int, codes_peak: float = 0.5) -> dict:
    edges = np.linspace(0, 6, 7)
    centres = 0.5 * (edges[:-1] + edges[1:])
    prior = np.diff(chi.cdf(edges, dim)) / np.diff(edges)
    codes = np.zeros(6)
    codes[0] = codes_peak / 1.0
    return {"dim": dim, "edges": edges.tolist(), "centres": centres.tolist(), "prior": prior.tolist(),
            "aggregate": (prior * 0.9).tolist(), "codes": codes.tolist(), "chi_density": chi.pdf(centres, dim).tolist(),
            "median_prior": 1.5, "median_aggregate": 1.4, "median_codes": 0.4, "median_chi": float(chi.median(dim))}


def generation(dim: int, kl: list[float], codes_peak: float = 0.5) -> dict:
    return {"active_units": {"count": 2}, "samplers": {},
            "prior_holes": {"kl_per_unit": kl, "norms": norms(dim, codes_peak)}}


def test_norm_profiles_one_panel_per_dimension_with_histograms_and_chi():
    runs = {"16": generation(16, [1.0] * 16), "2": generation(2, [2.0, 1.0]), "3": {"samplers": {}},  # an AE
            "4": generation(4, [1.0] * 4, codes_peak=40.0)}
    fig = figures.norm_profiles(runs)
    assert_renders(fig, 3)  # D = 3 has no prior_holes: left out
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["D = 2", "D = 4", "D = 16"]
    ax = fig.axes[0]
    expected = norms(2)
    for name in ("prior", "aggregate", "codes"):
        stairs = artist(ax, f"hist/{name}")
        np.testing.assert_allclose(stairs.get_data().values, expected[name])
        np.testing.assert_allclose(stairs.get_data().edges, expected["edges"])
    np.testing.assert_allclose(xy(artist(ax, "chi")), np.column_stack([expected["centres"], expected["chi_density"]]))
    assert ax.get_title().endswith("median ‖z‖: prior 1.50, aggregate 1.40, codes 0.40")
    assert xy(artist(ax, "median/codes"))[0, 0] == pytest.approx(0.4)
    assert not [a for a in ax.get_children() if a.get_gid() == "clipped"]
    spiky = fig.axes[1]
    assert artist(spiky, "clipped").get_text() == "histogram clipped"
    assert spiky.get_ylim()[1] < 40.0
    chosen = figures.norm_profiles(runs, dims=[16, 2])
    assert [ax.get_title().split("\n")[0] for ax in chosen.axes] == ["D = 2", "D = 16"]
    with pytest.raises(AtlasError, match="latent dimension 8"):
        figures.norm_profiles(runs, dims=[8])
    with pytest.raises(AtlasError, match="at least one run"):
        figures.norm_profiles({3: {"samplers": {}}})


def test_kl_spectrum_sorts_units_and_marks_collapse():
    runs = {2: generation(2, [0.5, 3.0]), 6: generation(6, [0.002, 2.5, 1e-6, 0.4, 0.003, 1.2])}
    fig = figures.kl_spectrum(runs)
    assert_renders(fig, 1)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(xy(artist(ax, "kl/2")), [[1, 3.0], [2, 0.5]])
    np.testing.assert_allclose(xy(artist(ax, "kl/6")), [[1, 2.5], [2, 1.2], [3, 0.4], [4, 0.003], [5, 0.002],
                                                        [6, 1e-4]])
    np.testing.assert_allclose(xy(artist(ax, "floor/6")), [[6, 1e-4]])  # below the display floor: open marker
    assert "3 collapsed" in artist(ax, "kl/6").get_label() and "0 collapsed" in artist(ax, "kl/2").get_label()
    np.testing.assert_allclose(xy(artist(ax, "collapse"))[:, 1], 0.01)


# -- 5. anomaly detection --------------------------------------------------------------------------------------


def metrics(auroc: float, auprc: float = 0.5) -> dict:
    return {"auroc": auroc, "auprc": auprc, "auprc_chance": 0.5, "auroc_ci": [auroc - 0.05, auroc + 0.02],
            "auprc_ci": [auprc - 0.1, auprc + 0.1], "n_normal": 10, "n_anomaly": 10}


@pytest.fixture()
def detection() -> dict:
    vae = {"corruption:blur": {"oracle_shape_residual": metrics(1.0), "reconstruction_error": metrics(0.7),
                               "negative_elbo": metrics(0.55, 0.9)},
           "student_t_df2": {"oracle_shape_residual": metrics(0.6), "reconstruction_error": metrics(0.9),
                             "negative_elbo": metrics(0.3, 0.2)}}
    ae = {"student_t_df2": {"oracle_shape_residual": metrics(0.61), "reconstruction_error": metrics(0.8)},
          "corruption:blur": {"oracle_shape_residual": metrics(0.99), "reconstruction_error": metrics(0.75)}}
    return {"vae": vae, "ae": ae, "cvae": None}


def test_anomaly_auroc_heatmap_holds_the_values_with_the_reference_last(detection):
    fig = figures.anomaly_auroc(detection)
    assert_renders(fig, 3)  # two models (None left out) and the colour bar
    vae, ae = fig.axes[:2]
    expected_columns = ["reconstruction error", "negative ELBO", "oracle shape residual (reference)"]
    assert [t.get_text().replace("\n", " ") for t in vae.get_xticklabels()] == expected_columns
    assert [t.get_text() for t in vae.get_yticklabels()] == ["Student t heatmaps, df = 2", "corruption: blur"]
    np.testing.assert_allclose(artist(vae, "auroc/vae").get_array().filled(np.nan), [[0.9, 0.3, 0.6],
                                                                                     [0.7, 0.55, 1.0]])
    image = artist(ae, "auroc/ae").get_array()
    assert image.mask[:, 1].all() and not image.mask[:, [0, 2]].any()  # the AE has no negative ELBO: blank
    assert artist(ae, "missing/ae/student_t_df2/negative_elbo").get_text() == "n/a"
    assert not [a for a in vae.get_children() if (a.get_gid() or "").startswith("missing/")]
    np.testing.assert_allclose(image.data[:, [0, 2]], [[0.8, 0.61], [0.75, 0.99]])
    reference = artist(vae, "reference")
    assert reference.get_x() == pytest.approx(1.5) and reference.get_width() == 1
    assert artist(vae, "value/vae/student_t_df2/negative_elbo").get_text() == "0.30"
    assert vae.get_title() == "vae" and ae.get_title() == "ae"


def test_anomaly_auroc_other_metric_and_bad_input(detection):
    fig = figures.anomaly_auroc(detection, metric="auprc")
    np.testing.assert_allclose(artist(fig.axes[0], "auprc/vae").get_array().filled(np.nan)[:, 1], [0.2, 0.9])
    with pytest.raises(AtlasError, match="unknown metric 'f1'"):
        figures.anomaly_auroc(detection, metric="f1")
    with pytest.raises(AtlasError, match="at least one model"):
        figures.anomaly_auroc({"vae": None})


# -- 6. imputation ---------------------------------------------------------------------------------------------


def summary(median: float, p90: float) -> dict:
    return {"mean": median, "median": median, "p90": p90, "p99": p90, "max": p90}


def imputation(scale: float) -> dict:
    def method(rmse, var_x, rho):
        return {"n_images": 8, "missing_fraction": 0.25, "missing_rmse": summary(rmse * scale, 2 * rmse * scale),
                "factor_errors": {"rho": summary(rho, 1.2 * rho), "var_x": summary(var_x, 1.5 * var_x)},
                "valid": {"fraction": 0.9}}

    return {"n_images": 8, "masks": {  # in the JSON's (sorted) order: the figure puts factors and masks in its own
        "random_pixels": {"start": method(0.5, 0.9, 0.4), "iterative": method(0.03, 0.06, 0.05),
                          "optimise": method(0.02, 0.05, 0.04)},
        "quadrant": {"start": method(0.3, 0.5, 0.2), "iterative": method(0.02, 0.05, 0.03),
                     "optimise": method(0.01, 0.04, 0.02)}}}


def test_imputation_errors_medians_and_p90_per_mask_method_and_model():
    fig = figures.imputation_errors({"vae": imputation(1.0), "ae": imputation(2.0), "gone": None})
    assert_renders(fig, 6)  # rows: RMSE, var_x, rho; columns: two masks
    rmse_quadrant = fig.axes[0]
    assert rmse_quadrant.get_title() == "a quadrant missing"
    medians = by_gid(rmse_quadrant, "median/")
    assert len(medians) == 6
    vae_x, ae_x = xy(medians["median/vae/iterative"])[0, 0], xy(medians["median/ae/iterative"])[0, 0]
    assert (vae_x, ae_x) == pytest.approx((0.875, 1.125))  # models offset around the method's slot
    assert xy(medians["median/vae/iterative"])[0, 1] == pytest.approx(0.02)
    assert xy(medians["median/ae/optimise"])[0, 1] == pytest.approx(0.02)
    np.testing.assert_allclose(xy(artist(rmse_quadrant, "p90/ae/start"))[:, 1], [0.6, 1.2])
    assert rmse_quadrant.get_yscale() == "log"  # start vs optimise spans well over a decade
    rho_random = fig.axes[5]
    assert xy(by_gid(rho_random, "median/")["median/vae/start"])[0, 1] == pytest.approx(0.4)
    assert [t.get_text() for t in rho_random.get_xticklabels()] == ["start (zeros)", "iterative", "optimise z"]
    assert "var_x relative error" in fig.axes[2].get_ylabel() and "rho absolute error" in fig.axes[4].get_ylabel()
    assert fig.axes[1].get_title() == "50 % random pixels missing"
    only_rho = figures.imputation_errors({"vae": imputation(1.0)}, factors=["rho"])
    assert len(only_rho.axes) == 4
    with pytest.raises(AtlasError, match="at least one model"):
        figures.imputation_errors({"vae": None})


# -- 7. clustering ---------------------------------------------------------------------------------------------


def cluster_scores(labels: list[str], ari: float) -> dict:
    return {label: {"kmeans": {"ari": ari, "nmi": ari + 0.1, "n_clusters": 2 if label == "df" else 4},
                    "gmm": {"ari": ari / 2, "nmi": ari, "n_clusters": 2 if label == "df" else 4}} for label in labels}


def test_clustering_scores_one_panel_per_label_set_df_first():
    bins = ["var_x_bins", "rho_bins"]
    gaussian = {"n_points": 100, "scores": {"codes": cluster_scores(bins, 0.4), "factors": cluster_scores(bins, 0.9),
                                            "pixels": cluster_scores(bins, 0.2)}}
    student = {"n_points": 100, "scores": {"codes": cluster_scores(["df", *bins], 0.3),
                                           "factors": cluster_scores(["df", *bins], 0.05),
                                           "pixels": cluster_scores(["df", *bins], 0.8)}}
    fig = figures.clustering_scores({"gaussian-vae-s0": gaussian, "student_t-vae-s0": student, "x": None})
    assert_renders(fig, 3)
    df, var_x, rho = fig.axes
    assert df.get_title() == "df (2 or 200), k = 2" and var_x.get_title() == "var_x quantile bins, k = 4"
    assert [t.get_text() for t in df.get_xticklabels()] == ["student_t-\nvae-s0"]  # gaussian has no df labels
    assert len(by_gid(df, "ari/")) == 6 and len(by_gid(rho, "ari/")) == 12
    assert xy(artist(df, "ari/student_t-vae-s0/pixels/kmeans"))[0, 1] == pytest.approx(0.8)
    assert xy(artist(rho, "ari/gaussian-vae-s0/codes/gmm"))[0, 1] == pytest.approx(0.2)
    kmeans, gmm = artist(rho, "ari/gaussian-vae-s0/codes/kmeans"), artist(rho, "ari/gaussian-vae-s0/codes/gmm")
    assert kmeans.get_marker() == "o" and gmm.get_marker() == "s"
    xs = sorted(xy(line)[0, 0] for gid, line in by_gid(rho, "ari/gaussian-vae-s0/").items())
    assert len(set(xs)) == 6 and all(-0.5 < x < 0.5 for x in xs)  # six distinct slots around the run
    nmi = figures.clustering_scores({"student_t-vae-s0": student}, metric="nmi")
    assert xy(artist(nmi.axes[0], "nmi/student_t-vae-s0/codes/kmeans"))[0, 1] == pytest.approx(0.4)
    with pytest.raises(AtlasError, match="unknown metric"):
        figures.clustering_scores({"a": student}, metric="purity")


# -- 8. attribute vectors --------------------------------------------------------------------------------------


def attribute(slope: float, drift: float, null_slope: float, null_p95: float, null_drift: float) -> dict:
    return {"slope": slope, "others_drift": drift, "selectivity": abs(slope) / (abs(slope) + drift),
            "sign_agreement": 0.9, "null": {"n": 16, "abs_slope_median": null_slope, "abs_slope_p95": null_p95,
                                            "others_drift_median": null_drift, "selectivity_median": 0.3}}


def test_attribute_effects_direction_against_its_null_per_factor():
    vae = {"evaluation": {"factors": {"var_x": attribute(-0.9, 0.1, 0.2, 0.5, 0.3),
                                      "rho": attribute(0.6, 0.4, 0.3, 0.7, 0.35)}}}
    ae = {"evaluation": {"factors": {"var_x": attribute(1.3, 0.2, 0.4, 0.9, 0.5),
                                     "rho": attribute(0.2, 0.8, 0.25, 0.6, 0.5)}}}
    fig = figures.attribute_effects({"vae": vae, "ae": ae, "none": None})
    assert_renders(fig, 2)
    var_x, rho = fig.axes
    assert var_x.get_title() == "direction of var_x"
    np.testing.assert_allclose(xy(artist(var_x, "direction/vae")), [[0.1, 0.9]])  # |slope|
    np.testing.assert_allclose(xy(artist(var_x, "null/ae")), [[0.5, 0.4]])
    np.testing.assert_allclose(xy(artist(rho, "null_p95/vae")), [[0.35, 0.3], [0.35, 0.7]])
    assert to_hex(artist(rho, "direction/ae").get_color()) == RED
    assert "vae: selectivity 0.90 (null 0.30)" in artist(var_x, "selectivity").get_text()
    assert var_x.get_ylim()[1] >= 1.3 and var_x.get_xlim()[1] >= 0.5  # every point inside the panel
    with pytest.raises(AtlasError, match="at least one model"):
        figures.attribute_effects({"vae": {"r2": 0.5}})


# -- 9. conditional generation ---------------------------------------------------------------------------------


def cvae_level(requested, value, matches: dict, chance: dict) -> dict:
    """A level of conditional_generation.json: matches {key: (fraction, low, high)}, chance {key: base rate}."""
    return {"requested": requested, "value": value,
            "match": {key: {"n": 100, "k": round(f * 100), "fraction": f, "low": lo, "high": hi}
                      for key, (f, lo, hi) in matches.items()},
            "chance": chance, "valid": {"n": 100, "k": 90, "fraction": 0.9, "low": 0.83, "high": 0.94}}


def test_conditional_match_one_panel_per_condition_with_wilson_bars_and_base_rate():
    df_run = {"condition": "df", "levels": [cvae_level("heavy", 2.0, {"class": (0.7, 0.6, 0.78)}, {"class": 0.3}),
                                            cvae_level("light", 200.0, {"class": (0.95, 0.89, 0.98)},
                                                       {"class": 0.7})]}
    rho_levels = [cvae_level(r, r, {"half_step": (0.4 + r / 4, 0.3 + r / 4, 0.5 + r / 4), "step": (0.6, 0.5, 0.7)},
                             {"half_step": 0.1, "step": 0.2}) for r in (-0.5, 0.0, 0.5)]
    rho_run = {"condition": "rho", "tolerances": {"half_step": 0.05, "step": 0.1}, "levels": rho_levels}
    fig = figures.conditional_match({"student_t-cvae-s0": df_run, "gaussian-cvae-s0": rho_run,
                                     "gaussian-cvae-s1": None}, seeds={"student_t-cvae-s0": 0})
    assert_renders(fig, 2)
    df_ax, rho_ax = fig.axes
    assert [t.get_text() for t in df_ax.get_xticklabels()] == ["heavy tails", "light tails"]
    points = xy(artist(df_ax, "match/student_t-cvae-s0/class"))
    np.testing.assert_allclose(points[:, 1], [0.7, 0.95])
    np.testing.assert_allclose(points[:, 0], [0.0, 1.0])  # one run, one rule: centred on the level
    segments = artist(df_ax, "wilson/student_t-cvae-s0/class").get_segments()
    np.testing.assert_allclose([(s[0, 1], s[1, 1]) for s in segments], [(0.6, 0.78), (0.89, 0.98)])
    np.testing.assert_allclose(xy(artist(df_ax, "chance/df/class/heavy"))[:, 1], [0.3, 0.3])
    # rho: a numeric axis at the requested values, both tolerances side by side, the tighter one filled.
    tight, loose = artist(rho_ax, "match/gaussian-cvae-s0/half_step"), artist(rho_ax, "match/gaussian-cvae-s0/step")
    np.testing.assert_allclose(xy(tight)[:, 1], [0.275, 0.4, 0.525])
    assert np.all(xy(tight)[:, 0] < xy(loose)[:, 0]) and np.all(np.abs(xy(tight)[:, 0] - [-0.5, 0.0, 0.5]) < 0.2)
    assert tight.get_markerfacecolor() != "white" and loose.get_markerfacecolor() == "white"
    assert "≤ 0.05 / 0.1" in rho_ax.get_title()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["seed 0", "gaussian-cvae-s0"] and "looser tolerance" in labels
    with pytest.raises(AtlasError, match="at least one run"):
        figures.conditional_match({"a": None, "b": {"condition": "df", "levels": []}})


def test_conditional_samples_one_row_per_condition():
    images = {"heavy tails": np.full((3, 6, 6), 0.2), "light tails": np.full((2, 6, 6), 0.8)}
    fig = figures.conditional_samples(images, extent=3.0, title="samples")
    assert_renders(fig, 6)
    first = artist(fig.axes[0], "sample/heavy tails/0")
    assert first.get_array().shape == (6, 6) and float(first.get_array().mean()) == pytest.approx(0.2)
    assert artist(fig.axes[3], "sample/light tails/0").get_array().mean() == pytest.approx(0.8)
    assert not fig.axes[5].axison  # the light row has two samples: its third cell is blank
    assert fig.axes[0].get_ylabel() == "heavy tails" and fig.axes[3].get_ylabel() == "light tails"
    with pytest.raises(AtlasError, match="at least one level"):
        figures.conditional_samples({"x": np.zeros((0, 6, 6))}, extent=3.0, title="t")
