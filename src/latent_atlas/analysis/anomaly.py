"""Anomaly detection with a trained model, scored against anomalies whose kind is known.

Scores (higher = more anomalous), all from one batched pass in inference mode, by :func:`anomaly_scores`:

* ``reconstruction_error``: Frobenius norm ||x - decode(mean(x))||, as in :mod:`latent_atlas.evaluation`;
* ``reconstruction_nll``: the model's likelihood term -log p(x | decode(mean(x))) summed over pixels
  (the AE's counterpart of the negative ELBO);
* ``negative_elbo`` (VAE only): mean over ``n_samples`` posterior draws of -log p(x | z) plus the
  analytic KL(q(z|x) || N(0, I)), with beta 1 whatever the model was trained with (the true bound);
* ``latent_density``: -log p(mean(x)) under a :class:`LatentDensity` fitted to the training codes;
* ``reconstruction_nll_excess`` and ``negative_elbo_excess``: the same two minus the image's own floor,
  the smallest NLL any reconstruction could reach (:func:`nll_floor`). With the Bernoulli likelihood on
  continuous pixels that floor is the image's summed binary entropy, which differs from image to image
  (heavy-tailed heatmaps have more mid-grey pixels), so the raw NLL mixes "how well reconstructed" with
  "how grey": on a 5-epoch default Gaussian VAE the raw negative ELBO tells Student t df = 2 images
  from held-out Gaussian ones with AUROC 0.71, the excess with 0.995. For the Gaussian likelihood the
  floor is 0.

:func:`detection_metrics` turns a normal and an anomalous score array into AUROC and AUPRC
(scikit-learn) with stratified percentile-bootstrap intervals; :func:`detection_table` does it per
anomaly kind and score.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.mixture import GaussianMixture

from ..errors import AtlasError
from ..evaluation import frobenius_errors
from ..models import Autoencoder
from ..models.inference import BATCH
from ..models.likelihood import mean_image, reconstruction_nll
from .holes import log_aggregate_posterior
from .neighbours import as_codes

DENSITY_METHODS = ("gmm", "aggregate")
SCORE_NAMES = ("reconstruction_error", "reconstruction_nll", "negative_elbo", "latent_density",
               "reconstruction_nll_excess", "negative_elbo_excess")
_FLOOR_CLIP = 1e-7
_BOOTSTRAP_CHUNK = 100


class LatentDensity:
    """A density on latent codes, fitted to the training codes; ``score_samples`` gives log p(z).

    * ``method="gmm"``: scikit-learn's ``GaussianMixture`` with ``n_components`` full-covariance
      components on the codes (posterior means for the VAE), seeded by ``seed``; any model kind.
    * ``method="aggregate"`` (VAE): the aggregate posterior q(z) = (1/M) sum_i N(z; mu_i, sigma_i^2)
      of :func:`latent_atlas.analysis.holes.log_aggregate_posterior`, over all training codes or at most
      ``max_codes`` of them drawn without replacement (seeded). Its cost is proportional to M, but a
      trained VAE's posteriors are narrow, so q is peaky and a subsample changes it: on a 5-epoch default
      Gaussian VAE, log q at the test codes from 2,000 of the 9,500 training codes correlates only 0.6
      with log q from all of them (0.98 from 8,550).
    """

    def __init__(self, method: str = "gmm", n_components: int = 10, max_codes: int | None = None, seed: int = 0):
        if method not in DENSITY_METHODS:
            raise AtlasError(f"unknown latent density method {method!r}; choose one of {', '.join(DENSITY_METHODS)}")
        if n_components < 1 or (max_codes is not None and max_codes < 1):
            raise AtlasError(f"n_components and max_codes must be positive, got {n_components} and {max_codes}")
        self.method = method
        self.n_components = n_components
        self.max_codes = max_codes
        self.seed = seed

    def fit(self, codes: np.ndarray, logvar: np.ndarray | None = None) -> LatentDensity:
        codes = as_codes(codes, "training codes", min_count=2)
        self.dim_ = codes.shape[1]
        if self.method == "gmm":
            if len(codes) < self.n_components:
                raise AtlasError(f"a {self.n_components}-component mixture needs at least that many codes, "
                                 f"got {len(codes)}")
            self.mixture_ = GaussianMixture(self.n_components, covariance_type="full", random_state=self.seed)
            self.mixture_.fit(codes)
            return self
        if logvar is None:
            raise AtlasError("the aggregate posterior needs the VAE's log-variances (logvar); the AE has none")
        logvar = as_codes(logvar, "logvar")
        if logvar.shape != codes.shape:
            raise AtlasError(f"logvar {logvar.shape} must have the shape of the codes {codes.shape}")
        keep = np.arange(len(codes))
        if self.max_codes is not None and len(codes) > self.max_codes:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(codes), self.max_codes, replace=False))
        self.means_, self.logvars_ = codes[keep], logvar[keep]
        return self

    def score_samples(self, codes: np.ndarray) -> np.ndarray:
        """(M, D) codes -> (M,) log density."""
        codes = as_codes(codes, min_count=0)
        if codes.shape[1] != self.dim_:
            raise AtlasError(f"codes have {codes.shape[1]} dimensions, the density was fitted on {self.dim_}")
        if self.method == "gmm":
            return self.mixture_.score_samples(codes) if len(codes) else np.zeros(0)
        return log_aggregate_posterior(codes, self.means_, self.logvars_)


def nll_floor(images: torch.Tensor, likelihood: str) -> torch.Tensor:
    """(B, 1, H, W) images -> (B,) the smallest reconstruction NLL of each image: the NLL of the mean image
    equal to the image itself (pixels clipped to [1e-7, 1 - 1e-7] so that the logits stay finite)."""
    target = images.double()
    logits = torch.logit(target.clamp(_FLOOR_CLIP, 1.0 - _FLOOR_CLIP))
    return reconstruction_nll(logits, target, likelihood)


def _check_images(model: Autoencoder, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    shape = tuple(model.config.image_shape)
    if images.ndim != 3 or images.shape[1:] != shape:
        raise AtlasError(f"images must have shape (N, {shape[0]}, {shape[1]}) for this model, got {images.shape}")
    if not np.isfinite(images).all():
        raise AtlasError("images contain non-finite pixels")
    return images


@torch.inference_mode()
def anomaly_scores(
    model: Autoencoder,
    images: np.ndarray,
    density: LatentDensity | None = None,
    n_samples: int = 1,
    seed: int = 0,
    batch_size: int = BATCH,
) -> dict[str, np.ndarray]:
    """(N, H, W) images -> a dict of (N,) float64 anomaly scores, higher = more anomalous (module docstring).

    ``negative_elbo`` and ``negative_elbo_excess`` are present for the VAE only; ``latent_density`` only
    when a fitted ``density`` is given. The posterior noise for the ELBO, (N, n_samples, D) standard
    normal draws, comes from ``numpy.random.default_rng(seed)``, so the scores do not depend on
    ``batch_size``.
    """
    images = _check_images(model, images)
    if n_samples < 1:
        raise AtlasError(f"n_samples must be at least 1, got {n_samples}")
    model.eval()
    device = next(model.parameters()).device
    is_vae = model.kind == "vae"
    noise = np.random.default_rng(seed).standard_normal((len(images), n_samples, model.latent_dim)) if is_vae else None
    means, reconstructions, nll, elbo, floor = [], [], [], [], []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size]).unsqueeze(1).to(device)  # (B, 1, H, W)
        posterior = model.encode(x)
        logits = model.decode(posterior.mean)  # (B, 1, H, W)
        means.append(posterior.mean.cpu().numpy())
        reconstructions.append(mean_image(logits)[:, 0].cpu().numpy())
        nll.append(reconstruction_nll(logits, x, model.config.likelihood).cpu().numpy())
        floor.append(nll_floor(x, model.config.likelihood).cpu().numpy())
        if is_vae:
            eps = torch.from_numpy(noise[start : start + batch_size]).to(device, torch.float32)  # (B, S, D)
            z = posterior.mean[:, None] + torch.exp(0.5 * posterior.logvar)[:, None] * eps  # (B, S, D)
            sampled = model.decode(z.reshape(-1, model.latent_dim))  # (B * S, 1, H, W)
            targets = x.repeat_interleave(n_samples, dim=0)  # (B * S, 1, H, W)
            sampled_nll = reconstruction_nll(sampled, targets, model.config.likelihood).reshape(len(x), n_samples)
            elbo.append((sampled_nll.mean(dim=1) + model.kl_divergence(posterior)).cpu().numpy())
    empty = np.zeros(0)
    floors = np.concatenate(floor) if floor else empty
    scores = {
        "reconstruction_error": frobenius_errors(images, np.concatenate(reconstructions)) if len(images) else empty,
        "reconstruction_nll": np.concatenate(nll).astype(np.float64) if nll else empty,
    }
    scores["reconstruction_nll_excess"] = scores["reconstruction_nll"] - floors
    if is_vae:
        scores["negative_elbo"] = np.concatenate(elbo).astype(np.float64) if elbo else empty
        scores["negative_elbo_excess"] = scores["negative_elbo"] - floors
    if density is not None:
        codes = np.concatenate(means) if means else np.zeros((0, model.latent_dim))
        scores["latent_density"] = -density.score_samples(codes)
    return scores


def _ranking_metrics(scores: np.ndarray, is_anomaly: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision for each row of case weights (B, n), as scikit-learn defines them.

    Scores are grouped into distinct values (descending); with tp / fp the weighted anomalies / normals
    per group and TP / FP their running sums, AUROC is the trapezoid sum_g fp_g (TP_{g-1} + TP_g) / (2 P N)
    (ties count one half) and AP = sum_g (tp_g / P) * TP_g / (TP_g + FP_g). Equal to ``roc_auc_score`` and
    ``average_precision_score`` with ``sample_weight`` = the row; bootstrap counts as rows give B resamples
    in one pass.
    """
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # first index of each distinct score
    positive = weights[:, order] * is_anomaly[order]  # (B, n)
    negative = weights[:, order] - positive
    if len(starts) < len(scores):  # ties: one group per distinct score
        positive, negative = (np.add.reduceat(a, starts, axis=1) for a in (positive, negative))  # (B, G)
    tp, fp = positive.cumsum(axis=1), negative.cumsum(axis=1)  # (B, G)
    n_pos, n_neg = tp[:, -1], fp[:, -1]  # (B,)
    auroc = (negative * (2.0 * tp - positive)).sum(axis=1) / (2.0 * n_pos * n_neg)
    precision = tp / np.maximum(tp + fp, np.finfo(float).tiny)
    return auroc, (positive * precision).sum(axis=1) / n_pos


def _bootstrap_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n) how often each of n cases is drawn when n are drawn with replacement."""
    draws = rng.integers(0, n, size=(n_resamples, n)) + n * np.arange(n_resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)


def _check_scores(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise AtlasError(f"{name} must be a non-empty 1-D array of scores, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise AtlasError(f"{name} contain non-finite values")
    return values


def detection_metrics(
    normal_scores: np.ndarray,
    anomaly_scores: np.ndarray,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float | int | list[float]]:
    """AUROC and AUPRC of telling anomalies (positive class) from normal images by a score (higher = anomalous).

    Point values from scikit-learn's ``roc_auc_score`` and ``average_precision_score``; intervals are
    percentile intervals over ``n_bootstrap`` stratified resamples (normal and anomalous images each
    resampled with replacement, keeping both counts), seeded by ``seed``. ``auprc_chance`` is the AUPRC
    of an uninformative score, the anomalies' share of the images. ``n_bootstrap=0`` skips the intervals.
    """
    normal = _check_scores(normal_scores, "normal scores")
    anomalous = _check_scores(anomaly_scores, "anomaly scores")
    if not 0.0 < confidence < 1.0:
        raise AtlasError(f"confidence must lie in (0, 1), got {confidence}")
    scores = np.concatenate([normal, anomalous])
    is_anomaly = np.r_[np.zeros(len(normal), bool), np.ones(len(anomalous), bool)]
    result: dict[str, float | int | list[float]] = {
        "auroc": float(roc_auc_score(is_anomaly, scores)),
        "auprc": float(average_precision_score(is_anomaly, scores)),
        "auprc_chance": len(anomalous) / len(scores),
        "n_normal": len(normal),
        "n_anomaly": len(anomalous),
        "n_bootstrap": n_bootstrap,
        "confidence": confidence,
    }
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        auroc, auprc = [], []
        for lo in range(0, n_bootstrap, _BOOTSTRAP_CHUNK):
            size = min(_BOOTSTRAP_CHUNK, n_bootstrap - lo)
            weights = np.hstack([_bootstrap_counts(len(normal), size, rng),
                                 _bootstrap_counts(len(anomalous), size, rng)])  # (size, n_normal + n_anomaly)
            roc, ap = _ranking_metrics(scores, is_anomaly, weights)
            auroc.append(roc)
            auprc.append(ap)
        tails = 100.0 * np.array([(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
        result["auroc_ci"] = np.percentile(np.concatenate(auroc), tails).tolist()
        result["auprc_ci"] = np.percentile(np.concatenate(auprc), tails).tolist()
    return result


def detection_table(
    normal: Mapping[str, np.ndarray],
    anomalies: Mapping[str, Mapping[str, np.ndarray]],
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, dict]]:
    """:func:`detection_metrics` for every anomaly kind and every score both sides have.

    ``normal`` maps score name -> (N,) scores of the normal images (e.g. :func:`anomaly_scores` of the
    held-out normal images, plus any reference score such as the oracle's residual); ``anomalies`` maps
    anomaly kind -> the same kind of dict for that kind's images. Returns kind -> score -> metrics.
    """
    table: dict[str, dict[str, dict]] = {}
    for kind, scores in anomalies.items():
        shared = [name for name in normal if name in scores]
        if not shared:
            raise AtlasError(f"anomaly kind {kind!r} has no score in common with the normal images")
        table[kind] = {name: detection_metrics(normal[name], scores[name], n_bootstrap, confidence, seed)
                       for name in shared}
    return table
