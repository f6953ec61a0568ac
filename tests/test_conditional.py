"""The conditional VAE's condition encoding and conditional generation scored by the oracle, checked against
decoders whose answers are known: one that draws the requested condition, one that ignores it."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from latent_atlas.analysis.conditional import (
    TOLERANCES,
    conditional_generation,
    df_boundary,
    df_class,
    matches,
    proportion,
    requested_levels,
    spread,
)
from latent_atlas.data.heatmaps import render_heatmaps
from latent_atlas.errors import AtlasError
from latent_atlas.models.conditioning import condition_dim, dataset_conditions, df_values, encode_conditions
from latent_atlas.oracle import HeatmapOracle

from .conftest import tiny_data_config, tiny_model_config

N_SAMPLES = 300


# -- the condition encoding ------------------------------------------------------------------------------------


def test_continuous_condition_is_scaled_by_the_data_range():
    config = tiny_data_config()  # rho values -0.6, 0.0, 0.3, 0.7
    encoded = encode_conditions("rho", np.array([-0.6, 0.05, 0.7, 1.35]), config)
    assert encoded.shape == (4, 1) and encoded.dtype == np.float32
    np.testing.assert_allclose(encoded[:, 0], [-1.0, 0.0, 1.0, 2.0], atol=1e-6)
    var = encode_conditions("var_x", np.array([0.3, 1.4, 2.5]), config)
    np.testing.assert_allclose(var[:, 0], [-1.0, 0.0, 1.0], atol=1e-6)
    single = tiny_data_config(rho={"values": (0.2,)})
    np.testing.assert_array_equal(encode_conditions("rho", np.array([0.2, 0.2]), single), np.zeros((2, 1)))


def test_df_condition_is_one_hot_by_class():
    config = tiny_data_config(kind="student_t")
    encoded = encode_conditions("df", np.array([2.0, 200.0, 2.0]), config)
    np.testing.assert_array_equal(encoded, [[1, 0], [0, 1], [1, 0]])
    np.testing.assert_array_equal(df_values(["light", "heavy"], config), [200.0, 2.0])
    with pytest.raises(AtlasError, match="neither class"):
        encode_conditions("df", np.array([2.0, 30.0]), config)
    with pytest.raises(AtlasError, match="needs Student t data"):
        encode_conditions("df", np.array([2.0]), tiny_data_config())
    with pytest.raises(AtlasError, match="unknown df class"):
        df_values(["medium"], config)
    assert (condition_dim(None), condition_dim("df"), condition_dim("rho")) == (0, 2, 1)


def test_dataset_conditions_follow_the_model_config(tiny_t_dataset):
    assert dataset_conditions(tiny_model_config(kind="vae"), tiny_t_dataset) is None
    index = np.array([5, 0, 17])
    cvae = tiny_model_config(kind="cvae", condition="df")
    expected = encode_conditions("df", tiny_t_dataset.factor("df")[index], tiny_t_dataset.config)
    np.testing.assert_array_equal(dataset_conditions(cvae, tiny_t_dataset, index), expected)
    assert dataset_conditions(cvae, tiny_t_dataset).shape == (len(tiny_t_dataset), 2)


# -- pure scoring functions ------------------------------------------------------------------------------------


def test_df_class_splits_at_the_geometric_mean_of_the_classes():
    config = tiny_data_config(kind="student_t")
    assert df_boundary(config) == pytest.approx(20.0)
    np.testing.assert_array_equal(df_class(np.array([1.5, 2.0, 19.9, 20.1, 200.0, 9000.0]), config),
                                  ["heavy", "heavy", "heavy", "light", "light", "light"])


def test_matches_use_each_tolerance_and_the_class_rule():
    config = tiny_data_config(kind="student_t")
    hits = matches("rho", 0.3, np.array([0.3, 0.34, 0.36, 0.2, 0.41]), config)
    assert TOLERANCES["rho"] == {"half_step": 0.05, "step": 0.1} and set(hits) == {"half_step", "step"}
    np.testing.assert_array_equal(hits["half_step"], [True, True, False, False, False])
    np.testing.assert_array_equal(hits["step"], [True, True, True, True, False])
    np.testing.assert_array_equal(matches("df", "light", np.array([2.2, 150.0, 25.0]), config)["class"],
                                  [False, True, True])


def test_proportion_gives_the_wilson_interval():
    hits = np.array([True] * 8 + [False] * 2)
    result = proportion(hits)
    z, n, p = norm.ppf(0.975), 10, 0.8
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert (result["n"], result["k"], result["fraction"]) == (10, 8, 0.8)
    assert result["low"] == pytest.approx(centre - half) and result["high"] == pytest.approx(centre + half)
    assert proportion(np.array([], dtype=bool))["fraction"] is None


def test_spread_is_std_and_iqr_or_the_heavy_fraction():
    config = tiny_data_config(kind="student_t")
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spread(values, "var_x", config) == {"n": 5, "std": pytest.approx(np.std(values, ddof=1)), "iqr": 2.0}
    assert spread(np.array([2.0, 200.0, 2.1, 300.0]), "df", config)["heavy_fraction"] == 0.5


def test_requested_levels():
    assert requested_levels("df", tiny_data_config(kind="student_t")) == ["heavy", "light"]
    assert requested_levels("rho", tiny_data_config()) == [-0.6, 0.0, 0.3, 0.7]
    with pytest.raises(AtlasError, match="unknown condition"):
        requested_levels("colour", tiny_data_config())


# -- conditional generation against decoders with known answers --------------------------------------------------


def data_rows(codes: np.ndarray, n_rows: int) -> np.ndarray:
    """Each prior draw picks a data row, uniformly: the first code unit through the normal CDF."""
    return np.minimum((norm.cdf(codes[:, 0]) * n_rows).astype(int), n_rows - 1)


def fake_decoders(dataset, name: str):
    """Decoders built from the data generator: "obeys" draws from the data's own rows of the requested
    condition (the true conditional distribution); "ignores" draws from all the data's rows; "collapsed" draws
    the requested condition but always the same covariance."""
    factors, axis = dataset.factors, dataset.axis
    column = dataset.factor_names.index(name)
    has_df = "df" in dataset.factor_names

    def render(table: np.ndarray) -> np.ndarray:
        return render_heatmaps(table[:, 0], table[:, 1], table[:, 2], axis, table[:, 3] if has_df else None)

    def obeys(codes, values):
        pool = factors[factors[:, column] == values[0]]  # every call asks for one value
        return render(pool[data_rows(codes, len(pool))])

    def ignores(codes, values):
        return render(factors[data_rows(codes, len(factors))])

    def collapsed(codes, values):
        table = np.repeat(factors[:1], len(codes), axis=0)
        table[:, column] = values
        return render(table)

    return {"obeys": obeys, "ignores": ignores, "collapsed": collapsed}


def score(dataset, name: str, decoder: str, seed: int = 0):
    oracle = HeatmapOracle.for_dataset(dataset, shape_threshold=0.05)
    return conditional_generation(fake_decoders(dataset, name)[decoder], lambda x: oracle.verdict(x, novelty=False),
                                  name, dataset.config, dataset.factors, dataset.factor_names, latent_dim=2,
                                  n_samples=N_SAMPLES, rng=np.random.default_rng(seed), n_shown=5)


@pytest.mark.parametrize("data, name", [("gaussian", "rho"), ("student_t", "df")])
def test_a_decoder_that_draws_the_condition_matches_it_always(tiny_dataset, tiny_t_dataset, data, name):
    dataset = tiny_dataset if data == "gaussian" else tiny_t_dataset
    results, arrays = score(dataset, name, "obeys")
    assert [lv["requested"] for lv in results["levels"]] == requested_levels(name, dataset.config)
    for level in results["levels"]:
        for match in level["match"].values():
            assert match["fraction"] == 1.0 and match["n"] == N_SAMPLES
            assert match["low"] > 0.98  # Wilson: 1.0 out of 300 is still an interval below 1
        assert level["valid"]["fraction"] == 1.0
        assert all(m["fraction"] == 1.0 for m in level["valid_and_match"].values())
        # The unconditioned factors are spread like the data's.
        for other in ("var_x", "var_y"):
            samples, reference = level["spread"][other]["samples"], level["spread"][other]["data"]
            assert samples["std"] == pytest.approx(reference["std"], rel=0.2, abs=1e-3)
    assert arrays["0/images"].shape == (5, 12, 12) and arrays["0/factors"].shape == (N_SAMPLES,
                                                                                     len(dataset.factor_names))
    assert results["mean_match"] == {key: 1.0 for key in results["levels"][0]["match"]}


@pytest.mark.parametrize("data, name", [("gaussian", "rho"), ("student_t", "df")])
def test_a_decoder_that_ignores_the_condition_scores_chance(tiny_dataset, tiny_t_dataset, data, name):
    dataset = tiny_dataset if data == "gaussian" else tiny_t_dataset
    results, _ = score(dataset, name, "ignores")
    values = dataset.factor(name)
    for level in results["levels"]:
        if name == "df":
            expected_chance = {"class": float(np.mean(values == level["value"]))}
        else:
            expected_chance = {key: float(np.mean(np.abs(values - level["value"]) <= TOLERANCES[name][key] + 1e-12))
                               for key in level["match"]}
        assert level["chance"] == pytest.approx(expected_chance)
        for key, match in level["match"].items():
            assert match["fraction"] == pytest.approx(expected_chance[key], abs=0.1)
    # Averaged over the requested levels, chance is far from the obeying decoder's 1.0 (the minority df class
    # scores its own small share).
    key = "half_step" if name == "rho" else "class"
    assert results["mean_match"][key] == pytest.approx(results["mean_chance"][key], abs=0.05)
    assert results["mean_match"][key] < 0.6


def test_a_collapsed_decoder_matches_but_has_no_spread(tiny_dataset):
    results, _ = score(tiny_dataset, "rho", "collapsed")
    for level in results["levels"]:
        assert level["match"]["half_step"]["fraction"] == 1.0
        for other in ("var_x", "var_y"):
            assert level["spread"][other]["samples"]["std"] < 0.01 < level["spread"][other]["data"]["std"]
            assert level["spread"][other]["samples"]["iqr"] < 0.01


def test_the_same_prior_draws_serve_every_level(tiny_dataset):
    seen = []

    def recording(codes, values):
        seen.append((codes.copy(), values.copy()))
        return fake_decoders(tiny_dataset, "rho")["obeys"](codes, values)

    oracle = HeatmapOracle.for_dataset(tiny_dataset, shape_threshold=0.05)
    conditional_generation(recording, lambda x: oracle.verdict(x, novelty=False), "rho", tiny_dataset.config,
                           tiny_dataset.factors, tiny_dataset.factor_names, latent_dim=3, n_samples=7,
                           rng=np.random.default_rng(0))
    assert len(seen) == 4 and all(np.array_equal(codes, seen[0][0]) for codes, _ in seen)
    assert [values[0] for _, values in seen] == [-0.6, 0.0, 0.3, 0.7] and seen[0][0].shape == (7, 3)


# -- a trained tiny cvae through evaluation and the registered study analysis -------------------------------------


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory, tiny_t_dataset):
    from latent_atlas.training import train

    from .conftest import tiny_train_config

    root = tmp_path_factory.mktemp("cvae")
    tiny_t_dataset.save(root / "t.npz")
    return train(tiny_t_dataset, root / "t.npz", tiny_model_config(kind="cvae", condition="df"), tiny_train_config(),
                 root / "run", progress=False).run


def test_evaluation_and_latents_use_each_images_own_condition(cvae_run, tiny_t_dataset):
    from latent_atlas.analysis.latents import encode_dataset
    from latent_atlas.evaluation import evaluate
    from latent_atlas.models.inference import encode, reconstruct

    model, test = cvae_run.load_model(), tiny_t_dataset.test_idx
    own = dataset_conditions(model.config, tiny_t_dataset, test)
    evaluation = evaluate(model, tiny_t_dataset)
    np.testing.assert_array_equal(evaluation.reconstructions,
                                  reconstruct(model, tiny_t_dataset.images[test], conditions=own))
    assert not np.allclose(evaluation.reconstructions,
                           reconstruct(model, tiny_t_dataset.images[test], conditions=own[:, ::-1].copy()))
    assert "test_elbo" in evaluation.results  # the cvae is variational
    latents = encode_dataset(model, tiny_t_dataset)
    mean, logvar = encode(model, tiny_t_dataset.images, conditions=dataset_conditions(model.config, tiny_t_dataset))
    np.testing.assert_array_equal(latents.mean, mean)
    np.testing.assert_array_equal(latents.logvar, logvar)
    with pytest.raises(AtlasError, match="needs the conditions"):
        reconstruct(model, tiny_t_dataset.images[test])


def test_the_registered_analysis_scores_a_trained_cvae(cvae_run, tmp_path):
    from latent_atlas.io import write_json
    from latent_atlas.study.analyses import toolbox  # noqa: F401  (registers the analyses)
    from latent_atlas.study.registry import ANALYSES, RunInputs
    from latent_atlas.study.runs import TOOLBOX

    entry = ANALYSES["conditional_generation"]
    assert entry.models == ("cvae",) and entry.groups == (TOOLBOX,)
    for name in ("anomaly", "imputation", "clustering", "attributes"):
        assert "cvae" not in ANALYSES[name].models
    write_json(tmp_path / "oracle.json", {"shape_threshold": 0.05})
    inputs = RunInputs(run_dir=cvae_run.path, dataset_path=cvae_run.dataset_path, oracle_path=tmp_path / "oracle.json",
                       params={**entry.params, "n_samples": 20, "n_shown": 3}, rng=np.random.default_rng(0))
    output = entry.fn(inputs)
    results = output.results
    assert results["condition"] == "df" and [lv["requested"] for lv in results["levels"]] == ["heavy", "light"]
    # Recompute the light level's match from the arrays the analysis saved: the class rule on the recovered df.
    light = results["levels"][1]
    recovered_df = output.arrays["1/factors"][:, 3]
    assert light["match"]["class"]["k"] == int(np.sum(recovered_df >= 20.0))
    assert light["match"]["class"]["n"] == 20 and output.arrays["1/images"].shape == (3, 12, 12)
    assert light["valid"]["k"] == int(output.arrays["1/valid"].sum())


def test_mean_spread_averages_each_statistic_over_levels():
    from latent_atlas.analysis.conditional import mean_spread

    levels = [{"spread": {"var_x": {"samples": {"n": 5, "std": 1.0, "iqr": 2.0}, "data": {"n": 3, "std": None,
                                                                                          "iqr": 4.0}}}},
              {"spread": {"var_x": {"samples": {"n": 5, "std": 3.0, "iqr": 2.0}, "data": {"n": 3, "std": None,
                                                                                          "iqr": 2.0}}}}]
    assert mean_spread(levels) == {"var_x": {"samples": {"std": 2.0, "iqr": 2.0}, "data": {"std": None, "iqr": 3.0}}}


def test_the_report_draws_the_cvae_part_from_the_analysis_files(cvae_run, tiny_t_dataset, tmp_path):
    from latent_atlas.io import write_json, write_npz
    from latent_atlas.report.build import ReportBuilder, condition_label
    from latent_atlas.study.config import StudyConfig

    (tmp_path / "data").mkdir()
    tiny_t_dataset.save(tmp_path / "data" / "student_t.npz")
    rows = []
    for seed in (0, 1):
        run_dir = f"runs/student_t-cvae-s{seed}"
        levels = [{"requested": level, "value": value, "chance": {"class": rate},
                   "match": {"class": {"n": 10, "k": 7 + seed, "fraction": 0.7 + seed / 10, "low": 0.4, "high": 0.9}}}
                  for level, value, rate in (("heavy", 2.0, 0.1), ("light", 200.0, 0.9))]
        write_json(tmp_path / run_dir / "analysis" / "conditional_generation.json",
                   {"condition": "df", "levels": levels})
        write_npz(tmp_path / run_dir / "analysis" / "conditional_generation.npz",
                  {"0/images": np.zeros((4, 12, 12), np.float16), "1/images": np.ones((4, 12, 12), np.float16)})
        rows.append({"run": f"student_t-cvae-s{seed}", "run_dir": run_dir, "model": "cvae", "seed": seed,
                     "data": "student_t", "settings": {}, "groups": ["toolbox"]})
    config = StudyConfig(datasets=("student_t",), sections=("toolbox",))
    builder = ReportBuilder(tmp_path, {"config": config.to_dict(), "runs": rows})
    builder.conditional_part()
    manifest = builder.figures.manifest
    assert set(manifest) == {"toolbox/cvae-match", "toolbox/cvae-samples-student_t"}  # samples: first seed only
    assert "student_t-cvae-s0" in manifest["toolbox/cvae-samples-student_t"]["alt"]
    assert (condition_label("rho", -0.0), condition_label("df", "heavy")) == ("rho = 0", "heavy tails")
