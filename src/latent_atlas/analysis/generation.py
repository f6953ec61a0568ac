"""Why a VAE can reconstruct well yet decode prior samples badly: per-run diagnostics of q(z) against p(z).

q(z) = (1/N) sum_i N(z; mu_i, diag sigma_i^2) is the aggregate posterior, p(z) = N(0, I) the prior. Each
function is pure, works on the (N, D) posterior means and log-variances of one run, and returns plain
numbers or a frozen result with ``to_dict()`` (JSON-able):

* :func:`active_units` and :func:`kl_per_unit` / :func:`collapsed_units`: which latent units carry
  information (Burda et al. 2016) and which collapsed onto the prior;
* :func:`aggregate_kl`: Monte Carlo KL(q || p) and KL(p || q) with the exact mixture density;
* :func:`classifier_two_sample_test`: can a classifier tell prior draws from aggregate-posterior draws;
* :func:`norm_profile`: the norms of prior draws, aggregate-posterior draws and codes against chi(D),
  the "soap bubble" made visible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import chi, mannwhitneyu, norm, rankdata, sem
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from ..errors import AtlasError
from .holes import log_aggregate_posterior, log_standard_normal
from .neighbours import as_codes

ACTIVE_THRESHOLD = 0.01
COLLAPSED_KL_NATS = 0.01
KL_SAMPLES = 1000
_SEED_HIGH = 2**31 - 1


def _posterior(mean: np.ndarray, logvar: np.ndarray | None, min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    mean = as_codes(mean, "mean", min_count=min_count)
    if logvar is None:
        raise AtlasError("logvar is required: these diagnostics need the VAE's posterior variances")
    logvar = np.asarray(logvar, dtype=np.float64)
    if logvar.shape != mean.shape:
        raise AtlasError(f"logvar {logvar.shape} does not match mean {mean.shape}")
    if not (np.isfinite(mean).all() and np.isfinite(logvar).all()):
        raise AtlasError("mean and logvar must be finite")
    return mean, logvar


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(_SEED_HIGH))


@dataclass(frozen=True, eq=False)
class ActiveUnits:
    count: int
    mask: np.ndarray  # (D,) bool
    variances: np.ndarray  # (D,) variance over the data of each unit's posterior mean
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mask": self.mask.tolist(), "variances": self.variances.tolist(),
                "threshold": self.threshold}


def active_units(mean: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> ActiveUnits:
    """Burda et al. (2016): unit d is active when Var_x(E_q[z_d | x]) > ``threshold`` (0.01).

    ``mean`` (N, D) are the posterior means (or the AE's codes); the variance is the population variance
    over the N rows (ddof 0).
    """
    mean = as_codes(mean, "mean", min_count=2)
    if not threshold >= 0.0:
        raise AtlasError(f"threshold must be non-negative, got {threshold}")
    variances = mean.var(axis=0)  # (D,)
    mask = variances > threshold
    return ActiveUnits(count=int(mask.sum()), mask=mask, variances=variances, threshold=float(threshold))


def kl_per_unit(mean: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """(D,) mean over the data of the analytic KL(N(mu_d, sigma_d^2) || N(0, 1)) per unit, in nats.

    KL = (mu^2 + sigma^2 - 1 - log sigma^2) / 2 for each row and unit; the sum over units is the VAE
    loss's KL term. A collapsed unit (q(z_d | x) = N(0, 1) for every x) has KL 0.
    """
    mean, logvar = _posterior(mean, logvar)
    return (0.5 * (mean**2 + np.exp(logvar) - 1.0 - logvar)).mean(axis=0)


def collapsed_units(mean: np.ndarray, logvar: np.ndarray, threshold: float = COLLAPSED_KL_NATS) -> np.ndarray:
    """(D,) bool: units whose :func:`kl_per_unit` is below ``threshold`` nats (posterior collapse)."""
    return kl_per_unit(mean, logvar) < threshold


def aggregate_posterior_draws(mean: np.ndarray, logvar: np.ndarray | None, n: int,
                              rng: np.random.Generator) -> np.ndarray:
    """(n, D) draws z ~ q(z): a component i uniform over the rows, then z = mu_i + sigma_i * eps.

    With ``logvar=None`` (an AE) the draws are codes picked uniformly with replacement.
    """
    mean = as_codes(mean, "mean")
    if n < 0:
        raise AtlasError(f"the number of draws must be non-negative, got {n}")
    component = rng.integers(0, len(mean), size=n)  # (n,)
    if logvar is None:
        return mean[component].copy()
    mean, logvar = _posterior(mean, logvar)
    return mean[component] + np.exp(0.5 * logvar[component]) * rng.standard_normal((n, mean.shape[1]))  # (n, D)


@dataclass(frozen=True)
class AggregateKL:
    kl_q_p: float  # KL(q || p), nats
    kl_q_p_se: float  # its Monte Carlo standard error
    kl_p_q: float  # KL(p || q), nats
    kl_p_q_se: float
    n_samples: int  # draws for each of the two estimates
    n_components: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def aggregate_kl(mean: np.ndarray, logvar: np.ndarray, n_samples: int = KL_SAMPLES,
                 rng: np.random.Generator | None = None) -> AggregateKL:
    """Monte Carlo KL(q || p) and KL(p || q) between the aggregate posterior q and the prior p = N(0, I).

    * KL(q || p) = E_q[log q(z) - log p(z)] over ``n_samples`` draws z ~ q (pick a row i uniformly, then
      z ~ N(mu_i, sigma_i^2): :func:`aggregate_posterior_draws`): large when q puts mass where p has little
      (codes pushed out to the tails).
    * KL(p || q) = E_p[log p(z) - log q(z)] over ``n_samples`` draws z ~ p: large when the prior puts
      mass where q has none, i.e. prior holes, the reason prior samples decode badly.

    log q is the exact mixture density over all N components (:func:`holes.log_aggregate_posterior`, no
    component left out: a draw from component i is a draw from q). Each estimate comes with its standard
    error ``scipy.stats.sem`` of the per-draw log ratios. Cost: the mixture density costs one N-vector of
    exponentials per draw, so 2 * n_samples * N exponentials; the default 1,000 draws each take about
    a second in all at N = 11,875 on one busy core, at D = 3 as at D = 16.
    """
    mean, logvar = _posterior(mean, logvar)
    if n_samples < 2:
        raise AtlasError(f"n_samples must be at least 2, got {n_samples}")
    rng = rng if rng is not None else np.random.default_rng(0)
    from_q = aggregate_posterior_draws(mean, logvar, n_samples, rng)  # (S, D)
    from_p = rng.standard_normal((n_samples, mean.shape[1]))  # (S, D)
    log_ratio_q = log_aggregate_posterior(from_q, mean, logvar) - log_standard_normal(from_q)  # (S,)
    log_ratio_p = log_standard_normal(from_p) - log_aggregate_posterior(from_p, mean, logvar)  # (S,)
    return AggregateKL(
        kl_q_p=float(log_ratio_q.mean()), kl_q_p_se=float(sem(log_ratio_q)),
        kl_p_q=float(log_ratio_p.mean()), kl_p_q_se=float(sem(log_ratio_p)),
        n_samples=int(n_samples), n_components=len(mean),
    )


@dataclass(frozen=True)
class TwoSampleResult:
    auc: float  # held-out ROC AUC for telling b from a; 0.5 = indistinguishable
    low: float  # DeLong interval of the AUC (the held-out split's sampling error)
    high: float
    p_value: float  # one-sided Mann-Whitney test of the held-out scores (H0: a and b equal in distribution)
    n_train: int
    n_test: int
    confidence: float
    features: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def delong_interval(positive: np.ndarray, negative: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """ROC AUC of scores with DeLong's (1988) standard error and normal interval (clipped to [0, 1]).

    With midranks, the structural components are V10_i = (rank of positive i among all scores - its rank
    among the positives) / n_neg and V01_j = 1 - (rank of negative j among all - its rank among the
    negatives) / n_pos (Sun & Xu 2014); AUC = mean V10 (ties count half, as in ``roc_auc_score``) and
    Var(AUC) = var(V10) / n_pos + var(V01) / n_neg. Returns (auc, low, high).
    """
    positive, negative = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    n_pos, n_neg = len(positive), len(negative)
    if n_pos < 2 or n_neg < 2:
        raise AtlasError(f"an AUC interval needs at least two scores per class, got {n_pos} and {n_neg}")
    ranks = rankdata(np.concatenate([positive, negative]))  # (n_pos + n_neg,)
    v10 = (ranks[:n_pos] - rankdata(positive)) / n_neg  # (n_pos,)
    v01 = 1.0 - (ranks[n_pos:] - rankdata(negative)) / n_pos  # (n_neg,)
    auc = float(v10.mean())
    half_width = norm.ppf(0.5 + confidence / 2.0) * np.sqrt(v10.var(ddof=1) / n_pos + v01.var(ddof=1) / n_neg)
    return auc, float(max(auc - half_width, 0.0)), float(min(auc + half_width, 1.0))


def classifier_two_sample_test(
    a: np.ndarray,
    b: np.ndarray,
    rng: np.random.Generator,
    test_fraction: float = 0.5,
    add_norm: bool = True,
    confidence: float = 0.95,
    max_iter: int = 100,
) -> TwoSampleResult:
    """Held-out AUC of a classifier telling the (M', D) sample ``b`` from the (M, D) sample ``a``.

    The classifier is scikit-learn's ``HistGradientBoostingClassifier`` (no early stopping, so its fit is a
    pure function of the data), trained on a stratified ``1 - test_fraction`` of the pooled rows and
    scored by ``roc_auc_score``-equivalent AUC on the rest. Trees split one coordinate at a time, while a
    shell and a ball differ only in the norm, so with ``add_norm`` (default) the Euclidean norm of each
    row is a feature too (a rotation-invariant summary; the test stays valid, because any classifier's
    held-out AUC is 0.5 in expectation when a and b have one distribution).

    The interval is DeLong's (:func:`delong_interval`): the held-out split's sampling error with the
    classifier fixed, in closed form. A stratified bootstrap over held-out rows (``scipy.stats.bootstrap``)
    gives the same width (a test checks it) but costs seconds per call at a few thousand rows; DeLong
    costs three rankings. It collapses to the point value when the classes are perfectly separated.
    ``p_value`` is the one-sided Mann-Whitney test that b's held-out scores exceed a's, valid because the
    classifier never saw those rows (Lopez-Paz & Oquab 2017, with AUC in place of accuracy). The
    boosting runs on one OpenMP thread: on a shared 2-core machine its default threads oversubscribe the
    cores and a fit takes ten times longer.
    """
    a, b = as_codes(a, "a", min_count=4), as_codes(b, "b", min_count=4)
    if a.shape[1] != b.shape[1]:
        raise AtlasError(f"the two samples have different dimensions: {a.shape[1]} and {b.shape[1]}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise AtlasError("the two samples must be finite")
    if not 0.0 < test_fraction < 1.0:
        raise AtlasError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    features = np.concatenate([a, b])  # (M + M', D)
    if add_norm:
        features = np.column_stack([features, np.linalg.norm(features, axis=1)])  # (M + M', D + 1)
    labels = np.concatenate([np.zeros(len(a), dtype=int), np.ones(len(b), dtype=int)])
    train_x, test_x, train_y, test_y = train_test_split(
        features, labels, test_size=test_fraction, stratify=labels, random_state=_seed(rng))
    classifier = HistGradientBoostingClassifier(max_iter=max_iter, early_stopping=False, random_state=_seed(rng))
    with threadpool_limits(1, user_api="openmp"):
        scores = classifier.fit(train_x, train_y).predict_proba(test_x)[:, 1]  # (T,)
    positive, negative = scores[test_y == 1], scores[test_y == 0]
    auc, low, high = delong_interval(positive, negative, confidence)
    p_value = float(mannwhitneyu(positive, negative, alternative="greater", method="asymptotic").pvalue)
    return TwoSampleResult(auc=auc, low=low, high=high, p_value=p_value, n_train=len(train_y), n_test=len(test_y),
                           confidence=confidence, features="coordinates+norm" if add_norm else "coordinates")


def norm_profile(
    prior_draws: np.ndarray,
    aggregate_draws: np.ndarray,
    codes: np.ndarray,
    dim: int,
    bins: int | np.ndarray = 50,
) -> dict[str, Any]:
    """Histograms of the Euclidean norms of three (·, dim) sets on shared bins, against chi(dim), JSON-able.

    ``bins``: a number of equal bins from 0 to the largest norm of the three sets (or the chi(dim)
    0.9999 quantile, whichever is larger), or explicit increasing edges. Returned: ``edges``, ``centres``,
    the density histograms ``prior``, ``aggregate`` and ``codes`` (each integrates to 1 over the bins),
    ``chi_density`` (the chi pdf at the centres), ``chi_bin_density`` (the chi probability of each bin over
    its width: what a histogram of infinitely many prior draws would show) and the median norm of each set
    with the chi median. A prior typical set is a shell at radius about sqrt(dim - 1/2); codes inside it
    are the soap bubble's hollow.
    """
    if dim < 1:
        raise AtlasError(f"dim must be positive, got {dim}")
    sets = {"prior": prior_draws, "aggregate": aggregate_draws, "codes": codes}
    norms = {}
    for name, values in sets.items():
        values = as_codes(values, name)
        if values.shape[1] != dim:
            raise AtlasError(f"{name} has {values.shape[1]} coordinates, expected dim = {dim}")
        norms[name] = np.linalg.norm(values, axis=1)  # (n,)
    if np.isscalar(bins):
        if int(bins) < 1:
            raise AtlasError(f"bins must be a positive number or increasing edges, got {bins}")
        top = max(max(float(n.max()) for n in norms.values()), float(chi.ppf(0.9999, df=dim)))
        edges = np.linspace(0.0, top * (1.0 + 1e-9), int(bins) + 1)
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or not (np.diff(edges) > 0).all():
            raise AtlasError("bins must be a positive number or increasing edges")
    centres = 0.5 * (edges[:-1] + edges[1:])
    widths = np.diff(edges)
    out: dict[str, Any] = {"dim": int(dim), "edges": edges.tolist(), "centres": centres.tolist()}
    for name, values in norms.items():
        out[name] = np.histogram(values, bins=edges, density=True)[0].tolist()
        out[f"n_{name}"] = len(values)
        out[f"median_{name}"] = float(np.median(values))
    out["chi_density"] = chi.pdf(centres, df=dim).tolist()
    out["chi_bin_density"] = (np.diff(chi.cdf(edges, df=dim)) / widths).tolist()
    out["median_chi"] = float(chi.median(df=dim))
    return out
