"""Samplers of latent codes: where to draw z from so that decoded samples look like the data.

Each is a scikit-learn-style object: ``fit(codes, logvar=None)`` returns ``self`` and leaves its learned
state in attributes ending in ``_``; ``sample(n, rng)`` returns (n, D) codes drawn with the given
``numpy.random.Generator`` (and nothing else), so the same fitted sampler and seed give the same codes.

``codes`` are what the sampler imitates: an AE's codes or a VAE's posterior means. With ``logvar`` (a
VAE) the target is the aggregate posterior q(z) instead: ``draws_per_code`` draws mu_i + sigma_i * eps
per row, with eps from ``numpy.random.default_rng(seed)``.

* :class:`PriorSampler`: the VAE's prior N(0, I); fit only records D.
* :class:`GaussianSampler`: one full-covariance Gaussian fitted to the codes.
* :class:`MixtureSampler`: a Gaussian mixture, components chosen by BIC (the ex-post density estimation
  of Ghosh et al. 2020).
* :class:`TwoStageSampler`: a second, small VAE trained on the codes (Dai & Wipf 2019).

``SAMPLERS`` maps a name to each class; :func:`make_sampler` builds one by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits
from torch import nn

from ..errors import AtlasError
from .holes import prior_points
from .neighbours import as_codes

MIXTURE_COMPONENTS = (1, 10)


def _check_count(n: int) -> int:
    if int(n) != n or n < 0:
        raise AtlasError(f"the number of samples must be a non-negative integer, got {n}")
    return int(n)


class _CodeSampler:
    """Shared checks: the fitting target (codes, or draws from q(z) with logvar) and the fitted dimension."""

    seed: int
    draws_per_code: int

    def _target(self, codes: np.ndarray, logvar: np.ndarray | None, min_count: int = 2) -> np.ndarray:
        codes = as_codes(codes, min_count=min_count)
        if not np.isfinite(codes).all():
            raise AtlasError("codes must be finite")
        self.dim_ = codes.shape[1]
        if logvar is None:
            return codes
        logvar = np.asarray(logvar, dtype=np.float64)
        if logvar.shape != codes.shape or not np.isfinite(logvar).all():
            raise AtlasError(f"logvar must be a finite array shaped like the codes {codes.shape}, got {logvar.shape}")
        if self.draws_per_code < 1:
            raise AtlasError(f"draws_per_code must be at least 1, got {self.draws_per_code}")
        rng = np.random.default_rng(self.seed)
        eps = rng.standard_normal((self.draws_per_code, *codes.shape))  # (R, N, D)
        return (codes + np.exp(0.5 * logvar) * eps).reshape(-1, codes.shape[1])  # (R * N, D)

    def _check_fitted(self, n: int) -> int:
        if not hasattr(self, "dim_"):
            raise AtlasError(f"{type(self).__name__} must be fitted before sampling")
        return _check_count(n)

    def __repr__(self) -> str:
        fitted = f", dim_={self.dim_}" if hasattr(self, "dim_") else ""
        return f"{type(self).__name__}({fitted.lstrip(', ')})"


class PriorSampler(_CodeSampler):
    """The VAE prior N(0, I): ``fit`` only records the dimension D of the codes."""

    def __init__(self, seed: int = 0, draws_per_code: int = 1):
        self.seed, self.draws_per_code = seed, draws_per_code

    def fit(self, codes: np.ndarray, logvar: np.ndarray | None = None) -> PriorSampler:
        self.dim_ = as_codes(codes, min_count=0).shape[1]
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return prior_points(self._check_fitted(n), self.dim_, rng)  # (n, D)


class GaussianSampler(_CodeSampler):
    """One Gaussian N(mean_, covariance_) with the codes' mean and (ddof 1) covariance."""

    def __init__(self, seed: int = 0, draws_per_code: int = 1):
        self.seed, self.draws_per_code = seed, draws_per_code

    def fit(self, codes: np.ndarray, logvar: np.ndarray | None = None) -> GaussianSampler:
        target = self._target(codes, logvar)  # (N, D)
        self.mean_ = target.mean(axis=0)  # (D,)
        self.covariance_ = np.atleast_2d(np.cov(target, rowvar=False))  # (D, D)
        eigenvalues, eigenvectors = np.linalg.eigh(self.covariance_)
        self.factor_ = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))  # (D, D): factor_ factor_^T = cov
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        eps = rng.standard_normal((self._check_fitted(n), self.dim_))  # (n, D)
        return self.mean_ + eps @ self.factor_.T


class MixtureSampler(_CodeSampler):
    """A full-covariance Gaussian mixture fitted to the codes (Ghosh et al. 2020's ex-post density estimation).

    The number of components is the one with the lowest BIC among ``components`` (an inclusive range,
    1 to 10 by default, Ghosh et al.'s choice as the upper end; the ten EM fits cost about 8 s (D = 3)
    and 19 s (D = 16) of CPU at N = 9,500 on the busy development machine), each fitted by
    scikit-learn's ``GaussianMixture`` with ``n_init`` k-means starts seeded by ``seed``, BLAS on one
    thread. Learned: ``n_components_``, ``bic_`` (components -> BIC), ``weights_``, ``means_``,
    ``covariances_``. ``sample`` draws a component by weight, then a
    Gaussian draw, both from the given ``rng`` (not the mixture's own ``random_state``).
    """

    def __init__(self, components: tuple[int, int] = MIXTURE_COMPONENTS, n_init: int = 1, seed: int = 0,
                 draws_per_code: int = 1):
        self.components, self.n_init, self.seed, self.draws_per_code = components, n_init, seed, draws_per_code

    def fit(self, codes: np.ndarray, logvar: np.ndarray | None = None) -> MixtureSampler:
        low, high = self.components
        if not 1 <= low <= high:
            raise AtlasError(f"components must be an inclusive range (low, high) with 1 <= low <= high, "
                             f"got {self.components}")
        target = self._target(codes, logvar)  # (N, D)
        if len(target) < high:
            raise AtlasError(f"{len(target)} codes are too few for a mixture of up to {high} components")
        self.bic_: dict[int, float] = {}
        best: GaussianMixture | None = None
        with threadpool_limits(1, user_api="blas"):
            for k in range(low, high + 1):
                mixture = GaussianMixture(k, covariance_type="full", n_init=self.n_init, random_state=self.seed)
                self.bic_[k] = float(mixture.fit(target).bic(target))
                if best is None or self.bic_[k] < self.bic_[best.n_components]:
                    best = mixture
        assert best is not None
        self.n_components_ = best.n_components
        self.weights_, self.means_, self.covariances_ = best.weights_, best.means_, best.covariances_
        self.cholesky_ = np.linalg.cholesky(self.covariances_)  # (K, D, D)
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        n = self._check_fitted(n)
        component = rng.choice(self.n_components_, size=n, p=self.weights_)  # (n,)
        eps = rng.standard_normal((n, self.dim_))  # (n, D)
        return self.means_[component] + np.einsum("nij,nj->ni", self.cholesky_[component], eps)


@contextmanager
def _torch_scope(seed: int) -> Iterator[None]:
    """Seeded torch RNG and one torch thread, both restored afterwards."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def _mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


class _SecondStageVAE(nn.Module):
    """MLP encoder to (mu_u, logvar_u), MLP decoder to the mean of z, and a learned log gamma per unit (Var z | u)."""

    def __init__(self, dim: int, latent_dim: int, hidden: tuple[int, ...], gamma: float):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = _mlp((dim, *hidden, 2 * latent_dim))
        self.decoder = _mlp((latent_dim, *reversed(hidden), dim))
        self.log_gamma = nn.Parameter(torch.full((dim,), float(np.log(gamma))))

    def loss(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Negative ELBO per row, averaged over the batch (nats, without the D log(2 pi) / 2 constant)."""
        mu, logvar = self.encoder(z).chunk(2, dim=1)  # (B, L) each
        u = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)  # (B, L)
        squared = (z - self.decoder(u)).pow(2)  # (B, D)
        nll = 0.5 * (squared * torch.exp(-self.log_gamma) + self.log_gamma).sum(dim=1)  # (B,)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return (nll + kl).mean()


class TwoStageSampler(_CodeSampler):
    """Dai & Wipf (2019)'s two-stage VAE: a second VAE learns q(z); sample u ~ N(0, I), decode to z.

    The second stage is small: MLP encoder and decoder with ``hidden`` ReLU layers, a latent space of
    ``latent_dim`` units (the codes' D by default, as in the paper) and a Gaussian likelihood
    N(z; decoder(u), diag gamma) whose variance gamma is learned. That learned gamma is the paper's key
    point: it can shrink towards 0 where the data lie on a manifold, which lets the second stage match
    q(z) instead of blurring it. Two departures, both from trials on synthetic VAE-like codes (3 curved
    active units, the others collapsed to N(0, 1) in q(z)): gamma is per unit rather than one scalar
    (one scalar settled near 0.8 of the codes' variance, set by the collapsed units' pure noise, which
    would blur the active units just as much), and a sample is the full generative model
    decoder(u) + sqrt(gamma) * eps rather than the decoder's mean (which drops the variance of every unit
    the second stage models as noise). Gamma starts at ``gamma_init`` (0.05; started at 1, the second
    stage collapsed onto its prior in our D = 3 trial) and learns ``gamma_lr_factor`` (10) times faster
    than the networks, so that it tracks the reconstruction error (1 gave the same quality within the
    trials' noise).

    Codes are centred and divided by one overall scale (``center_``, ``scale_`` = the root mean
    variance per unit), which keeps the codes' shape: a per-unit scale would blow nearly constant
    units up to unit variance. Training: Adam, ``epochs`` passes in shuffled minibatches of
    ``batch_size``, learning rate decayed linearly to 0; the torch RNG is seeded by ``seed`` inside
    ``torch.random.fork_rng`` and torch runs on one thread (both restored afterwards), so a fit is a pure
    function of the codes and the seed. Learned: ``model_``, ``gamma_`` (D,), ``loss_history_`` (mean
    loss per epoch). Cost: ``epochs * N / batch_size`` Adam steps (3,000 at N = 9,500).
    """

    def __init__(self, hidden: tuple[int, ...] = (64, 64), latent_dim: int | None = None, epochs: int = 40,
                 batch_size: int = 128, learning_rate: float = 3e-3, gamma_init: float = 0.05,
                 gamma_lr_factor: float = 10.0, seed: int = 0, draws_per_code: int = 1):
        self.hidden, self.latent_dim, self.epochs = tuple(hidden), latent_dim, epochs
        self.gamma_init, self.gamma_lr_factor = gamma_init, gamma_lr_factor
        self.batch_size, self.learning_rate = batch_size, learning_rate
        self.seed, self.draws_per_code = seed, draws_per_code

    def _check_params(self) -> None:
        if not self.hidden or min(self.hidden) < 1:
            raise AtlasError(f"hidden must be a non-empty tuple of positive layer sizes, got {self.hidden}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise AtlasError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.latent_dim is not None and self.latent_dim < 1:
            raise AtlasError(f"latent_dim must be at least 1, got {self.latent_dim}")
        if not self.learning_rate > 0:
            raise AtlasError(f"learning_rate must be positive, got {self.learning_rate}")

    def fit(self, codes: np.ndarray, logvar: np.ndarray | None = None) -> TwoStageSampler:
        self._check_params()
        target = self._target(codes, logvar)  # (N, D)
        self.center_ = target.mean(axis=0)
        self.scale_ = float(np.sqrt(target.var(axis=0).mean())) or 1.0
        data = torch.as_tensor((target - self.center_) / self.scale_, dtype=torch.float32)  # (N, D)
        n = len(data)
        steps_per_epoch = -(-n // self.batch_size)
        with _torch_scope(self.seed):
            generator = torch.Generator().manual_seed(self.seed)
            model = _SecondStageVAE(self.dim_, self.latent_dim or self.dim_, self.hidden, self.gamma_init)
            networks = [p for name, p in model.named_parameters() if name != "log_gamma"]
            gamma_rate = self.gamma_lr_factor * self.learning_rate
            optimizer = torch.optim.Adam([{"params": networks}, {"params": [model.log_gamma], "lr": gamma_rate}],
                                         lr=self.learning_rate)
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: 1.0 - step / (self.epochs * steps_per_epoch))
            history = []
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=generator)
                total = 0.0
                for lo in range(0, n, self.batch_size):
                    batch = data[order[lo : lo + self.batch_size]]  # (B, D)
                    loss = model.loss(batch, generator)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    total += loss.item() * len(batch)
                history.append(total / n)
        if not np.isfinite(history).all():
            raise AtlasError("the two-stage VAE's training diverged (non-finite loss); lower the learning rate")
        self.model_ = model.eval()
        self.gamma_ = model.log_gamma.detach().exp().double().numpy()  # (D,)
        self.loss_history_ = history
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        n = self._check_fitted(n)
        u = torch.as_tensor(rng.standard_normal((n, self.model_.latent_dim)), dtype=torch.float32)  # (n, L)
        with _torch_scope(self.seed), torch.no_grad():
            z = self.model_.decoder(u).double().numpy()  # (n, D)
        z += np.sqrt(self.gamma_) * rng.standard_normal((n, self.dim_))
        return self.center_ + z * self.scale_


SAMPLERS: dict[str, type[_CodeSampler]] = {
    "prior": PriorSampler,
    "gaussian": GaussianSampler,
    "mixture": MixtureSampler,
    "two_stage": TwoStageSampler,
}


def make_sampler(name: str, **params: Any) -> _CodeSampler:
    """A sampler by its ``SAMPLERS`` name, built with ``params``."""
    if name not in SAMPLERS:
        raise AtlasError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](**params)
