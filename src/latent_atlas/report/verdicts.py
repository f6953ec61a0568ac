"""Sentences for comparisons over seeds, every number in them traced to its file.

A paired comparison of two model kinds (``aggregates.compare_models``) becomes "AE lower (better) than VAE
by 0.099 (95 % CI 0.080 to 0.118; paired t over 3 seeds, p = 0.003)", or "equivalent within ±0.02", or
"not detected at n = 3 paired seeds (minimum detectable difference 0.05)"; never "no difference" read off
overlapping intervals.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from .html import NumberSources

DIRECTION_WORDS = {"lower": ("lower (better)", "higher (worse)"), "higher": ("higher (better)", "lower (worse)"),
                   None: ("lower", "higher")}


def comparison_sentence(sources: NumberSources, path: str, name: str, entry: dict[str, Any], fmt: str = ".3f") -> Markup:
    """One quantity's verdict between the two model kinds, from ``aggregates/<comparison>.json``."""
    paired = entry.get("paired")
    if not paired:
        return Markup("not compared (one model kind has no value)")
    base = f"quantities.{name}.paired"
    verdict = paired["verdict"]
    kind = verdict["kind"]
    a, b = paired["names"]
    n = len(paired["seeds"])
    if kind in ("a_greater", "b_greater"):
        first, second = (a, b) if kind == "a_greater" else (b, a)
        better = entry.get("better")
        word = DIRECTION_WORDS[better][1] if better == "lower" else ("higher (better)" if better == "higher" else "higher")
        diff = sources.num(path, f"{base}.difference.mean", "+" + fmt)
        low = sources.num(path, f"{base}.difference.low", "+" + fmt)
        high = sources.num(path, f"{base}.difference.high", "+" + fmt)
        p = sources.num(path, f"{base}.verdict.p_value", ".2g")
        return Markup(f"<strong>{escape(first)} {word} than {escape(second)}</strong>: {escape(a)} &minus; "
                      f"{escape(b)} = {diff} (95 % CI {low} to {high}; paired t over {n} seeds, p = {p})")
    if kind == "equivalent":
        margin = sources.num(path, f"quantities.{name}.margin", "g")
        p = sources.num(path, f"{base}.verdict.tost_p_value", ".2g")
        return Markup(f"<strong>equivalent within &plusmn;{margin}</strong> (paired TOST over {n} seeds, p = {p})")
    if kind == "not_detected":
        mdd = sources.num(path, f"{base}.verdict.mdd", fmt)
        diff = sources.num(path, f"{base}.difference.mean", "+" + fmt)
        return Markup(f"<strong>no difference detected</strong> at n = {n} paired seeds ({escape(a)} &minus; "
                      f"{escape(b)} = {diff}; minimum detectable difference {mdd} at 80 % power); not shown "
                      f"equivalent either")
    if kind == "constant":
        diff = sources.num(path, f"{base}.difference.mean", "+" + fmt)
        return Markup(f"every paired difference is {diff} (no test possible)")
    return Markup(escape(verdict.get("verdict", "one training seed cannot decide")))


def mean_interval(sources: NumberSources, path: str, key: str, fmt: str = ".3f") -> Markup:
    """``mean [low, high]`` of an ``over_seeds`` entry at ``key``; the mean alone with one seed."""
    data = sources.get(path, key, {}) or {}
    if data.get("mean") is None:
        return Markup("&ndash;")
    mean = sources.num(path, f"{key}.mean", fmt)
    if data.get("low") is None:
        return mean
    return Markup(f"{mean} [{sources.num(path, f'{key}.low', fmt)}, {sources.num(path, f'{key}.high', fmt)}]")
