"""The four-factor extension: does a 3-D code keep what the images say about the tails (df)?"""

from __future__ import annotations

import numpy as np

from ...analysis.classify import ambiguous_band, heavy_probability, heavy_tail_labels, knn_classifier, missing_class
from ...data import HeatmapDataset
from ..registry import AnalysisOutput, RunInputs, analysis


def band_mask(dataset: HeatmapDataset) -> np.ndarray:
    """(N_test,) the test images whose df the covariance leaves open: 0 < P(heavy | covariance) < 1."""
    config, test = dataset.config, dataset.test_idx
    p_heavy = heavy_probability(dataset.factor("var_x")[test], dataset.factor("var_y")[test], config.df_threshold,
                                config.df_noise_max, config.df_rule_gives)
    return ambiguous_band(p_heavy)


@analysis("knn_df", datasets=("student_t",), version=1)
def knn_df(inputs: RunInputs) -> AnalysisOutput:
    """KNN on the codes for the heavy-tailed class, overall and on the ambiguous band, where only the tails
    themselves (not the covariance) can tell df apart."""
    dataset = inputs.dataset
    labels = heavy_tail_labels(dataset.factors, dataset.factor_names, dataset.config.df_heavy)
    reason = missing_class(labels, dataset.train_idx, dataset.test_idx)
    if reason:
        return AnalysisOutput({"skipped": reason})
    codes, train, test = inputs.latents.codes, dataset.train_idx, dataset.test_idx
    result = knn_classifier(codes[train], labels[train], codes[test], labels[test],
                            seed=int(inputs.rng.integers(2**31)), features="codes",
                            test_subsets={"band": band_mask(dataset)})
    return AnalysisOutput({**result.to_dict(), "df_rule_gives": dataset.config.df_rule_gives})
