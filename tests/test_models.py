"""One contract test parametrised over every registered model kind, plus the loss terms against references."""

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from latent_atlas.config import ModelConfig
from latent_atlas.models import MODEL_KINDS, build_model
from latent_atlas.models.likelihood import reconstruction_nll
from latent_atlas.training import load_model, save_model

from .conftest import tiny_model_config

KINDS = sorted(MODEL_KINDS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_model_contract(kind, likelihood, tmp_path):
    torch.manual_seed(0)
    config = tiny_model_config(kind=kind, likelihood=likelihood, latent_dim=2).for_images((12, 12))
    model = build_model(config)
    images = torch.rand(5, 1, 12, 12)

    posterior = model.encode(images)
    assert posterior.mean.shape == (5, 2)
    assert (posterior.logvar is not None) == (kind == "vae")
    out = model(images, sample=True, generator=torch.Generator().manual_seed(1))
    assert out.logits.shape == (5, 1, 12, 12) and out.codes.shape == (5, 2)
    assert model.decode_images(out.codes).shape == (5, 12, 12)

    # Two optimisation steps on one batch reduce its loss.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model.loss(images, sample=False).total.item()
    for _ in range(2):
        optimizer.zero_grad()
        model.loss(images, sample=True, generator=torch.Generator().manual_seed(2)).total.backward()
        optimizer.step()
    assert model.loss(images, sample=False).total.item() < before

    save_model(tmp_path / "m.safetensors", model)
    loaded = load_model(tmp_path / "m.safetensors")
    assert type(loaded) is type(model) and loaded.config == model.config
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.decode(out.codes).numpy(), model.decode(out.codes).numpy())


@pytest.mark.parametrize(
    "shape, strides, pools",
    [((36, 36), (1, 1), (2, 2)), ((35, 29), (1, 1), (2, 2)), ((40, 17), (2, 1), (2, 2)), ((33, 33), (1, 2), (3, 2)),
     ((9, 64), (1, 1), (1, 2))],
)
def test_decoder_returns_the_input_size(shape, strides, pools):
    config = ModelConfig(channels=(4, 4), hidden_dims=(8,), strides=strides, pool_sizes=pools).for_images(shape)
    model = build_model(config)
    assert model(torch.rand(2, 1, *shape)).logits.shape == (2, 1, *shape)


def test_vae_kl_matches_torch_distributions():
    model = build_model(tiny_model_config(kind="vae", latent_dim=3).for_images((12, 12)))
    posterior = model.encode(torch.rand(4, 1, 12, 12))
    q = Normal(posterior.mean, torch.exp(0.5 * posterior.logvar))
    expected = kl_divergence(q, Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(model.kl_divergence(posterior), expected)


def test_ae_has_no_kl_and_no_noise():
    model = build_model(tiny_model_config(kind="ae").for_images((12, 12)))
    images = torch.rand(3, 1, 12, 12)
    a = model(images, sample=True, generator=torch.Generator().manual_seed(0))
    b = model(images, sample=True, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.logits, b.logits)
    assert model.loss(images).kl.item() == 0.0


def test_vae_sampling_uses_the_reparameterisation():
    model = build_model(tiny_model_config(kind="vae", latent_dim=2).for_images((12, 12)))
    posterior = model.encode(torch.rand(1, 1, 12, 12))
    draws = torch.stack([model.sample_codes(posterior, torch.Generator().manual_seed(s))[0] for s in range(4000)])
    torch.testing.assert_close(draws.mean(0), posterior.mean[0].detach(), atol=0.1, rtol=0)
    torch.testing.assert_close(draws.std(0), torch.exp(0.5 * posterior.logvar[0]).detach(), atol=0.05, rtol=0.05)


def test_reconstruction_terms_are_summed_over_pixels():
    logits = torch.randn(2, 1, 3, 3)
    images = torch.rand(2, 1, 3, 3)
    p = torch.sigmoid(logits)
    bce = -(images * torch.log(p) + (1 - images) * torch.log(1 - p)).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_nll(logits, images, "bernoulli"), bce)
    torch.testing.assert_close(reconstruction_nll(logits, images, "gaussian"), 0.5 * ((p - images) ** 2).flatten(1).sum(1))


def test_beta_weights_only_the_kl_term():
    torch.manual_seed(0)
    images = torch.rand(4, 1, 12, 12)
    model = build_model(tiny_model_config(kind="vae", beta=1.0).for_images((12, 12)))
    heavy = build_model(tiny_model_config(kind="vae", beta=4.0).for_images((12, 12)))
    heavy.load_state_dict(model.state_dict())
    a = model.loss(images, generator=torch.Generator().manual_seed(3))
    b = heavy.loss(images, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.reconstruction, b.reconstruction)
    torch.testing.assert_close(b.total, a.reconstruction + 4.0 * a.kl)
