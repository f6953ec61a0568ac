from types import SimpleNamespace

import numpy as np
import pytest

from latent_atlas.analysis.attributes import AttributeDirections, evaluate_directions
from latent_atlas.errors import AtlasError

NAMES = ("var_x", "var_y", "rho")


def linear_codes(n: int = 600, dim: int = 3, noise: float = 0.0, seed: int = 0):
    """Independent uniform factors, codes = factors @ A.T + b (+ noise), with A's columns orthonormal."""
    rng = np.random.default_rng(seed)
    factors = np.column_stack([rng.uniform(0.1, 4.9, n), rng.uniform(0.1, 4.9, n), rng.uniform(-0.9, 0.9, n)])
    a = np.linalg.qr(rng.normal(size=(dim, 3)))[0]  # (D, 3), orthonormal columns
    b = rng.normal(size=dim)
    codes = factors @ a.T + b + noise * rng.normal(size=(n, dim))
    return factors, codes, a, b


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


@pytest.mark.parametrize("dim", [3, 5])
def test_regression_recovers_the_columns_of_the_linear_map(dim):
    factors, codes, a, _ = linear_codes(dim=dim, noise=0.05)
    attributes = AttributeDirections().fit(codes, factors, NAMES)
    assert attributes.directions_.shape == (3, dim)
    for k, name in enumerate(NAMES):
        assert cosine(attributes.direction(name), a[:, k]) > 0.999
        assert np.linalg.norm(attributes.direction(name)) == pytest.approx(factors[:, k].std(), rel=0.01)
    assert attributes.r2_ > 0.99


def test_quantile_means_recover_the_columns_when_factors_are_independent():
    factors, codes, a, _ = linear_codes(n=4000)
    attributes = AttributeDirections("quantile_means").fit(codes, factors, NAMES)
    for k, name in enumerate(NAMES):
        assert cosine(attributes.direction(name), a[:, k]) > 0.98
        assert np.linalg.norm(attributes.direction(name)) == pytest.approx(factors[:, k].std(), rel=0.05)


def test_quantile_means_follow_correlated_factors_where_regression_does_not():
    rng = np.random.default_rng(1)
    first = rng.normal(size=2000)
    factors = np.column_stack([first, first + 0.5 * rng.normal(size=2000)])  # the second follows the first
    codes = factors.copy()  # code axis k is factor k
    regression = AttributeDirections().fit(codes, factors).directions_
    means = AttributeDirections("quantile_means").fit(codes, factors).directions_
    assert abs(cosine(regression[0], np.array([1.0, 0.0]))) > 0.999
    assert cosine(means[0], np.array([1.0, 1.0])) > 0.95  # the class-mean difference drags factor 2 along


def identity_pair(a: np.ndarray, b: np.ndarray):
    """A "decoder" that returns the code and an "oracle" that inverts the linear map: factors exactly."""
    return (lambda codes: codes.copy()), (lambda images: (images - b) @ a)


def test_identity_decoder_and_oracle_move_only_the_intended_factor():
    factors, codes, a, b = linear_codes()
    attributes = AttributeDirections().fit(codes, factors, NAMES)
    decode, recover = identity_pair(a, b)
    result = evaluate_directions(attributes, codes, decode, recover, n_random=20, rng=np.random.default_rng(0))
    assert result["n_codes"] == 64 and result["n_null_codes"] == 8 and result["alphas"] == [-1.0, -0.5, 0.5, 1.0]
    for k, name in enumerate(NAMES):
        scores = result["factors"][name]
        assert scores["slope"] == pytest.approx(1.0, abs=1e-9)
        assert scores["slope_units"] == pytest.approx(factors[:, k].std(), rel=1e-9)
        assert scores["sign_agreement"] == 1.0
        assert scores["others_drift"] == pytest.approx(0.0, abs=1e-9)
        assert scores["selectivity"] == pytest.approx(1.0)
        null = scores["null"]
        assert null["n"] == 20 and null["abs_slope_p95"] < 1.0  # orthonormal map: |cos| < 1 for any other direction
        assert null["slope_exceeded"] == 0.0
        assert null["selectivity_median"] < 0.9 and null["selectivity_exceeded"] == 0.0
        assert null["others_drift_median"] > 0.1
        assert "valid_fraction" not in scores


def test_drift_of_a_coupled_factor_is_measured_in_its_sds():
    factors, codes, a, b = linear_codes()
    attributes = AttributeDirections().fit(codes, factors, NAMES)
    decode, recover_exact = identity_pair(a, b)
    coupling = np.eye(3)
    coupling[1, 0] = 0.5  # the oracle reports var_y + 0.5 var_x as var_y

    def recover(images):
        return recover_exact(images) @ coupling.T

    result = evaluate_directions(attributes, codes, decode, recover, n_random=0)["factors"]
    scale = attributes.factor_scale_
    assert result["var_x"]["drift"]["var_y"] == pytest.approx(0.5 * scale[0] / scale[1], rel=1e-9)
    assert result["var_x"]["drift"]["rho"] == pytest.approx(0.0, abs=1e-9)
    assert result["var_x"]["others_drift"] == pytest.approx(0.25 * scale[0] / scale[1], rel=1e-9)
    assert result["var_x"]["selectivity"] == pytest.approx(1.0 / (1.0 + 0.25 * scale[0] / scale[1]), rel=1e-9)
    assert result["var_y"]["others_drift"] == pytest.approx(0.0, abs=1e-9)
    assert result["var_x"]["null"]["slope_exceeded"] is None


def test_the_null_uses_a_random_subset_of_sorted_codes():
    factors, codes, a, b = linear_codes()
    order = np.argsort(factors[:, 0])
    factors, codes = factors[order], codes[order]
    attributes = AttributeDirections().fit(codes, factors, NAMES)
    decode, recover_exact = identity_pair(a, b)
    median = np.median(factors[:, 0])

    def recover(images):  # no response at all below the median var_x, where the sorted codes start
        found = recover_exact(images)
        found[found[:, 0] < median] = 0.0
        return found

    result = evaluate_directions(attributes, codes, decode, recover, max_codes=None, rng=np.random.default_rng(0))
    assert result["n_codes"] == len(codes) and result["n_null_codes"] == 8
    assert all(scores["null"]["abs_slope_median"] > 0.05 for scores in result["factors"].values())


def test_an_oracle_result_is_read_by_factor_name_with_its_verdict():
    factors, codes, a, b = linear_codes()
    attributes = AttributeDirections().fit(codes, factors, NAMES)
    decode, recover_exact = identity_pair(a, b)

    def recover(images):
        found = recover_exact(images)
        return SimpleNamespace(factors=np.column_stack([found[:, ::-1], np.ones(len(found))]),
                               factor_names=("rho", "var_y", "var_x", "df"), valid=found[:, 0] > 2.5)

    plain = evaluate_directions(attributes, codes, decode, lambda x: recover_exact(x), n_random=3)
    named = evaluate_directions(attributes, codes, decode, recover, n_random=3)
    for name in NAMES:
        assert named["factors"][name]["slope"] == pytest.approx(plain["factors"][name]["slope"], abs=1e-12)
        assert 0.0 < named["factors"][name]["valid_fraction"] < 1.0


def test_bad_inputs_are_named():
    factors, codes, a, b = linear_codes(n=50)
    with pytest.raises(AtlasError, match="constant"):
        AttributeDirections().fit(codes, np.column_stack([factors[:, :2], np.ones(50)]), NAMES)
    with pytest.raises(AtlasError, match="unknown attribute method"):
        AttributeDirections("pca")
    attributes = AttributeDirections().fit(codes, factors, NAMES)
    decode, recover = identity_pair(a, b)
    with pytest.raises(AtlasError, match="non-zero"):
        evaluate_directions(attributes, codes, decode, recover, alphas=(0.0, 1.0))
    with pytest.raises(AtlasError, match="dimensions"):
        evaluate_directions(attributes, codes[:, :2], decode, recover)
    with pytest.raises(AtlasError, match="recover must give"):
        evaluate_directions(attributes, codes, decode, lambda x: x[:, :2])
    with pytest.raises(AtlasError, match="unknown factor"):
        attributes.direction("df")


def test_directions_of_a_trained_model_read_by_the_real_oracle(trained_runs, tiny_dataset):
    from latent_atlas.models.inference import decode, encode
    from latent_atlas.oracle import HeatmapOracle

    model = trained_runs["vae"].load_model()
    codes = encode(model, tiny_dataset.images)[0]
    attributes = AttributeDirections().fit(codes, tiny_dataset.factors, tiny_dataset.factor_names)
    oracle = HeatmapOracle.for_dataset(tiny_dataset)

    def recover(images):
        return oracle.verdict(images, novelty=False)

    result = evaluate_directions(attributes, codes, lambda z: decode(model, z), recover, n_random=2,
                                 max_codes=6, rng=np.random.default_rng(0))
    assert result["n_codes"] == 6 and set(result["factors"]) == set(tiny_dataset.factor_names)
    for scores in result["factors"].values():
        assert np.isfinite([scores["slope"], scores["others_drift"], scores["null"]["abs_slope_median"]]).all()
        assert 0.0 <= scores["sign_agreement"] <= 1.0 and 0.0 <= scores["valid_fraction"] <= 1.0
    again = evaluate_directions(attributes, codes, lambda z: decode(model, z), recover, n_random=2,
                                max_codes=6, rng=np.random.default_rng(0))
    assert again == result
