import numpy as np
import pytest
import torch

from latent_atlas.analysis.fidelity import energy_distance
from latent_atlas.analysis.samplers import (
    SAMPLERS,
    GaussianSampler,
    MixtureSampler,
    TwoStageSampler,
    make_sampler,
)
from latent_atlas.errors import AtlasError

FAST = {"mixture": dict(components=(1, 4)), "two_stage": dict(epochs=2, hidden=(16, 16))}
TRAINED = {**FAST, "two_stage": dict(epochs=20, batch_size=64, hidden=(32, 32))}
MEAN = np.array([1.0, -2.0, 0.5])
COVARIANCE = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, -0.3], [0.0, -0.3, 0.5]])


def fast_sampler(name: str, settings: dict = FAST):
    return make_sampler(name, **settings.get(name, {}))


@pytest.fixture(scope="module")
def gaussian_codes() -> np.ndarray:
    return np.random.default_rng(0).multivariate_normal(MEAN, COVARIANCE, size=2000)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_contract(name, gaussian_codes):
    sampler = fast_sampler(name)
    assert sampler.fit(gaussian_codes) is sampler
    assert sampler.dim_ == 3
    first = sampler.sample(500, np.random.default_rng(1))
    assert first.shape == (500, 3) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, sampler.sample(500, np.random.default_rng(1)))
    assert not np.allclose(first, sampler.sample(500, np.random.default_rng(2)))
    assert sampler.sample(0, np.random.default_rng(1)).shape == (0, 3)
    refitted = fast_sampler(name).fit(gaussian_codes)
    np.testing.assert_array_equal(first, refitted.sample(500, np.random.default_rng(1)))
    with pytest.raises(AtlasError, match="non-negative integer"):
        sampler.sample(-1, np.random.default_rng(1))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_fitted_on_a_known_gaussian_reproduces_its_moments(name, gaussian_codes):
    samples = fast_sampler(name, TRAINED).fit(gaussian_codes).sample(6000, np.random.default_rng(3))
    mean, covariance = (np.zeros(3), np.eye(3)) if name == "prior" else (MEAN, COVARIANCE)
    np.testing.assert_allclose(samples.mean(axis=0), mean, atol=0.1)
    np.testing.assert_allclose(np.cov(samples, rowvar=False), covariance, atol=0.15)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_must_be_fitted_before_sampling(name):
    with pytest.raises(AtlasError, match="fitted"):
        make_sampler(name).sample(3, np.random.default_rng(0))


def test_make_sampler_refuses_unknown_names():
    with pytest.raises(AtlasError, match="unknown sampler 'flow'"):
        make_sampler("flow")


def test_mixture_picks_the_number_of_well_separated_clusters_by_bic():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    codes = np.concatenate([centre + rng.normal(size=(300, 2)) for centre in centres])
    sampler = MixtureSampler(components=(1, 6)).fit(codes)
    assert sampler.n_components_ == 3
    assert sorted(sampler.bic_) == [1, 2, 3, 4, 5, 6]
    assert min(sampler.bic_, key=sampler.bic_.get) == 3
    np.testing.assert_allclose(np.sort(sampler.weights_), [1 / 3] * 3, atol=0.01)
    samples = sampler.sample(3000, np.random.default_rng(1))
    nearest = np.linalg.norm(samples[:, None] - centres[None], axis=2).argmin(axis=1)
    np.testing.assert_allclose(np.bincount(nearest) / 3000, [1 / 3] * 3, atol=0.03)
    with pytest.raises(AtlasError, match="too few"):
        MixtureSampler(components=(1, 10)).fit(codes[:5])
    with pytest.raises(AtlasError, match="inclusive range"):
        MixtureSampler(components=(3, 2)).fit(codes)


def test_fitting_with_logvar_targets_the_aggregate_posterior():
    mean = np.zeros((4000, 2))
    logvar = np.log(np.tile([1.0, 0.25], (4000, 1)))  # q(z) = N(0, diag(1, 0.25))
    sampler = GaussianSampler(seed=3).fit(mean, logvar)
    np.testing.assert_allclose(sampler.covariance_, np.diag([1.0, 0.25]), atol=0.05)
    np.testing.assert_allclose(GaussianSampler().fit(mean).covariance_, 0.0)
    twice = GaussianSampler(seed=3, draws_per_code=2).fit(mean, logvar)
    assert twice.covariance_[0, 0] != sampler.covariance_[0, 0]
    with pytest.raises(AtlasError, match="logvar must be"):
        GaussianSampler().fit(mean, logvar[:, :1])


def test_two_stage_leaves_torch_global_state_alone():
    threads, state = torch.get_num_threads(), torch.random.get_rng_state()
    TwoStageSampler(epochs=1, hidden=(8,)).fit(np.random.default_rng(0).normal(size=(100, 2)))
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.slow
def test_two_stage_learns_a_small_gamma_and_beats_one_gaussian_on_a_ring():
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 1500)
    ring = np.column_stack([np.cos(angle), np.sin(angle)]) * 2.0 + 0.05 * rng.normal(size=(1500, 2))
    held_out = np.column_stack([np.cos(angle[:500] + 1.0), np.sin(angle[:500] + 1.0)]) * 2.0
    sampler = TwoStageSampler(epochs=100, hidden=(32, 32), batch_size=64, seed=1).fit(ring)
    assert (sampler.gamma_ < 0.5 * sampler.gamma_init).all()  # the learned variance shrank
    assert sampler.loss_history_[-1] < sampler.loss_history_[0]
    two_stage = energy_distance(sampler.sample(500, np.random.default_rng(2)), held_out)
    gaussian = energy_distance(GaussianSampler().fit(ring).sample(500, np.random.default_rng(2)), held_out)
    assert two_stage < 0.6 * gaussian
    seeds = [TwoStageSampler(epochs=2, hidden=(32, 32), seed=seed).fit(ring) for seed in (1, 2)]
    first, second = (sampler.sample(5, np.random.default_rng(0)) for sampler in seeds)
    assert not np.allclose(first, second)


def test_two_stage_checks_its_parameters():
    codes = np.zeros((20, 2))
    with pytest.raises(AtlasError, match="epochs"):
        TwoStageSampler(epochs=0).fit(codes)
    with pytest.raises(AtlasError, match="hidden"):
        TwoStageSampler(hidden=()).fit(codes)
    with pytest.raises(AtlasError, match="finite"):
        TwoStageSampler().fit(np.full((20, 2), np.inf))
