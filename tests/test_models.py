"""One contract test parametrised over every registered model kind, plus the loss terms against references."""

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from latent_atlas.config import ModelConfig
from latent_atlas.errors import AtlasError
from latent_atlas.models import MODEL_KINDS, build_model
from latent_atlas.models.conditioning import CONDITION_DIMS
from latent_atlas.models.inference import decode, encode
from latent_atlas.models.likelihood import reconstruction_nll
from latent_atlas.training import load_model, save_model

from .conftest import tiny_model_config

KINDS = sorted(MODEL_KINDS)
# What a kind needs beyond the shared tiny config (the cvae: the factor it is conditioned on).
KIND_SETTINGS = {"cvae": {"condition": "df"}}
VARIATIONAL = {"vae", "cvae"}


def kind_config(kind: str, **overrides) -> ModelConfig:
    return tiny_model_config(kind=kind, **{**KIND_SETTINGS.get(kind, {}), **overrides})


def some_conditions(model, n: int, seed: int = 0) -> torch.Tensor | None:
    """(n, C) conditions for a conditional model (one-hot rows for df), None for the others."""
    if not model.conditional:
        return None
    rows = torch.randint(model.condition_dim, (n,), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.one_hot(rows, model.condition_dim).float()  # (n, C)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_model_contract(kind, likelihood, tmp_path):
    torch.manual_seed(0)
    config = kind_config(kind, likelihood=likelihood, latent_dim=2).for_images((12, 12))
    model = build_model(config)
    assert type(model) is MODEL_KINDS[kind] and model.kind == kind
    images = torch.rand(5, 1, 12, 12)
    conditions = some_conditions(model, 5)

    posterior = model.encode(images, conditions)
    assert posterior.mean.shape == (5, 2)
    assert (posterior.logvar is not None) == (kind in VARIATIONAL)
    out = model(images, sample=True, generator=torch.Generator().manual_seed(1), conditions=conditions)
    assert out.logits.shape == (5, 1, 12, 12) and out.codes.shape == (5, 2)
    assert model.decode_images(out.codes, conditions).shape == (5, 12, 12)

    # Two optimisation steps on one batch reduce its loss.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model.loss(images, sample=False, conditions=conditions).total.item()
    for _ in range(2):
        optimizer.zero_grad()
        model.loss(images, sample=True, generator=torch.Generator().manual_seed(2),
                   conditions=conditions).total.backward()
        optimizer.step()
    assert model.loss(images, sample=False, conditions=conditions).total.item() < before

    save_model(tmp_path / "m.safetensors", model)
    loaded = load_model(tmp_path / "m.safetensors")
    assert type(loaded) is type(model) and loaded.config == model.config
    saved, restored = model.state_dict(), loaded.state_dict()
    assert saved.keys() == restored.keys()
    for name, weight in saved.items():  # the same numbers; the layout may differ (channels_last on the CPU)
        assert torch.equal(restored[name], weight), name
    with torch.no_grad():  # the layouts sum in different orders: equal to float32 rounding
        np.testing.assert_allclose(loaded.decode(out.codes, conditions).numpy(),
                                   model.decode(out.codes, conditions).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_conditions_are_required_exactly_when_the_kind_takes_them(kind):
    model = build_model(kind_config(kind).for_images((12, 12)))
    images, codes = torch.rand(2, 1, 12, 12), torch.zeros(2, model.latent_dim)
    if model.conditional:
        with pytest.raises(AtlasError, match="needs the conditions"):
            model.encode(images)
        with pytest.raises(AtlasError, match="needs the conditions"):
            model.decode(codes)
        with pytest.raises(AtlasError, match="must have shape"):
            model.decode(codes, torch.zeros(2, model.condition_dim + 1))
    else:
        with pytest.raises(AtlasError, match="takes no conditions"):
            model.encode(images, torch.zeros(2, 1))
        with pytest.raises(AtlasError, match="takes no conditions"):
            model.loss(images, conditions=torch.zeros(2, 1))


@pytest.mark.parametrize("condition", sorted(CONDITION_DIMS))
def test_the_condition_enters_both_encoder_and_decoder(condition):
    torch.manual_seed(0)
    model = build_model(tiny_model_config(kind="cvae", condition=condition).for_images((12, 12))).eval()
    width = CONDITION_DIMS[condition]
    assert model.to_posterior.in_features == model.encoder.out_features + width
    assert model.decoder.head[0].in_features == model.latent_dim + width
    images, codes = torch.rand(3, 1, 12, 12), torch.randn(3, model.latent_dim)
    a, b = torch.zeros(3, width), torch.ones(3, width)
    with torch.no_grad():
        assert not torch.allclose(model.encode(images, a).mean, model.encode(images, b).mean)
        assert not torch.allclose(model.decode(codes, a), model.decode(codes, b))
        # The condition changes nothing but the rows it is given to.
        mixed = torch.cat([a[:1], b[1:]])
        torch.testing.assert_close(model.decode(codes, mixed)[0], model.decode(codes, a)[0])


def test_the_condition_belongs_to_the_cvae_alone():
    assert kind_config("cvae").condition == "df"
    with pytest.raises(ValueError, match="condition: the cvae needs"):
        tiny_model_config(kind="cvae")
    with pytest.raises(ValueError, match="only the cvae takes a condition"):
        tiny_model_config(kind="vae", condition="rho")
    # Unconditional configs serialise as before the cvae existed (same run hashes, same resumes).
    assert "condition" not in tiny_model_config(kind="vae").to_dict()
    cvae = tiny_model_config(kind="cvae", condition="rho")
    assert ModelConfig.model_validate(cvae.to_dict()) == cvae


def test_unconditional_kinds_build_as_before_the_cvae():
    """The AE and VAE draw the same initial weights whatever the cvae adds: their layer sizes are unchanged."""
    model = build_model(tiny_model_config(kind="vae", latent_dim=3).for_images((12, 12)))
    assert model.to_posterior.in_features == model.encoder.out_features
    assert model.decoder.head[0].in_features == 3


@pytest.mark.parametrize(
    "shape, strides, pools",
    [((36, 36), (1, 1), (2, 2)), ((35, 29), (1, 1), (2, 2)), ((40, 17), (2, 1), (2, 2)), ((33, 33), (1, 2), (3, 2)),
     ((9, 64), (1, 1), (1, 2))],
)
def test_decoder_returns_the_input_size(shape, strides, pools):
    config = ModelConfig(channels=(4, 4), hidden_dims=(8,), strides=strides, pool_sizes=pools).for_images(shape)
    model = build_model(config)
    assert model(torch.rand(2, 1, *shape)).logits.shape == (2, 1, *shape)


def test_a_loaded_model_has_channels_last_weights_on_the_cpu_and_the_same_outputs(tmp_path):
    """Loading puts the weights in the CPU's faster layout (``models.layout``); encoding and decoding give the
    row-major model's numbers, at any batch size."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="vae").for_images((36, 36))).eval()
    save_model(tmp_path / "m.safetensors", model)
    loaded = load_model(tmp_path / "m.safetensors")
    weight = loaded.encoder.blocks[3].weight  # (32, 16, 3, 3)
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    images = np.random.default_rng(0).random((300, 36, 36), dtype=np.float32)
    mean, logvar = encode(loaded, images)
    reference_mean, reference_logvar = encode(model, images, batch_size=1024)
    np.testing.assert_allclose(mean, reference_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logvar, reference_logvar, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(decode(loaded, mean), decode(model, mean, batch_size=1024), rtol=1e-4, atol=1e-6)


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


@pytest.mark.parametrize("kind", ["ae", "vae", "cvae"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_bfloat16_autocast_runs_the_network_in_bfloat16_and_the_loss_in_float32(kind, likelihood):
    from latent_atlas.training.trainer import training_autocast

    torch.manual_seed(0)
    model = build_model(kind_config(kind, latent_dim=3, likelihood=likelihood).for_images((12, 12)))
    images = torch.rand(16, 1, 12, 12)
    conditions = torch.rand(16, CONDITION_DIMS[model.config.condition]) if model.conditional else None
    with training_autocast(torch.device("cpu"), "float32"):
        assert model(images, conditions=conditions).logits.dtype == torch.float32
        full = model.loss(images, sample=False, conditions=conditions)
    with training_autocast(torch.device("cpu"), "bfloat16"):
        out = model(images, conditions=conditions)
        half = model.loss(images, sample=False, conditions=conditions)
    assert out.logits.dtype == torch.bfloat16  # the convolutions ran in bfloat16
    assert out.posterior.mean.dtype == torch.float32  # sampling and the KL term get float32 parameters
    for part in ("total", "reconstruction", "kl"):
        assert getattr(half, part).dtype == torch.float32
    # The likelihood itself runs in float32 on the bfloat16 network's logits (for the Gaussian likelihood the
    # sigmoid would otherwise run in bfloat16).
    assert half.reconstruction == reconstruction_nll(out.logits.float(), images, likelihood).mean()
    # The same weights and images give the float32 loss to bfloat16's precision (8 bits of mantissa), not exactly.
    assert half.total.item() == pytest.approx(full.total.item(), rel=2e-2)
    assert half.total.item() != full.total.item()
