"""Views of the codes for plotting: the raw axes when they fit, else PCA, t-SNE or UMAP."""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import AtlasError

METHODS = ("axes", "pca", "tsne", "umap")


def project(codes: np.ndarray, method: str = "pca", n_components: int = 3, seed: int = 0) -> np.ndarray:
    """(N, D) codes -> (N, n_components). ``axes`` keeps the first coordinates (D <= n_components pads nothing)."""
    if method not in METHODS:
        raise AtlasError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    codes = np.asarray(codes, dtype=np.float64)
    if method == "axes" or codes.shape[1] <= n_components:
        return codes[:, :n_components]
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=n_components, random_state=seed).fit_transform(codes)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(5.0, (len(codes) - 1) / 3)))
        return TSNE(n_components=n_components, perplexity=perplexity, init="pca", random_state=seed).fit_transform(codes)
    try:
        with warnings.catch_warnings():  # umap-learn warns on import that its TensorFlow variant is unavailable
            warnings.simplefilter("ignore", ImportWarning)
            import umap
    except ImportError:
        raise AtlasError("UMAP needs the optional package umap-learn: pip install 'latent-atlas[umap]'") from None
    # A fixed random_state makes UMAP single-threaded; n_jobs=1 says so rather than letting it warn.
    return umap.UMAP(n_components=n_components, random_state=seed, n_jobs=1).fit_transform(codes)
