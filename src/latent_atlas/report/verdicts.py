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
    """One quantity's verdict between the two model kinds, from ``aggregates/<comparison>.json``: decided on the
    p-value Holm-adjusted within the quantity's family (both p-values shown) when it has one."""
    paired = entry.get("paired")
    if not paired:
        return Markup("not compared (one model kind has no value)")
    base = f"quantities.{name}.paired"
    better = entry.get("better")
    verdict = paired["verdict"]
    kind = verdict["kind"]
    a, b = paired["names"]
    n = len(paired["seeds"])
    adjusted = "p_adjusted" in verdict and verdict.get("family_size", 1) > 1  # a family of one needs no adjustment

    def p_values(raw: str, adjusted_key: str) -> str:
        text = f"p = {sources.num(path, f'{base}.verdict.{raw}', '.3g')}"
        if adjusted:
            size = sources.num(path, f"{base}.verdict.family_size", "d")
            text += (f"; Holm over the {size} tests of &lsquo;{escape(verdict['family'])}&rsquo;: "
                     f"{sources.num(path, f'{base}.verdict.{adjusted_key}', '.3g')}")
        return text

    if kind in ("a_greater", "b_greater"):
        first, second = (a, b) if kind == "a_greater" else (b, a)
        word = DIRECTION_WORDS[better][1] if better == "lower" else ("higher (better)" if better == "higher" else "higher")
        diff = sources.num(path, f"{base}.difference.mean", "+" + fmt)
        low = sources.num(path, f"{base}.difference.low", "+" + fmt)
        high = sources.num(path, f"{base}.difference.high", "+" + fmt)
        return Markup(f"<strong>{escape(first)} {word} than {escape(second)}</strong>: {escape(a)} &minus; "
                      f"{escape(b)} = {diff} (95 % CI {low} to {high}; paired t over {n} seeds, "
                      f"{p_values('p_value', 'p_adjusted')})")
    if kind == "equivalent":
        margin = sources.num(path, f"{base}.verdict.margin", "g")
        return Markup(f"<strong>equivalent within &plusmn;{margin}</strong> (paired TOST over {n} seeds, "
                      f"{p_values('tost_p_value', 'tost_p_adjusted')})")
    if kind == "not_detected":
        mdd = sources.num(path, f"{base}.verdict.mdd", fmt)
        diff = sources.num(path, f"{base}.difference.mean", "+" + fmt)
        return Markup(f"<strong>no difference detected</strong> at n = {n} paired seeds ({escape(a)} &minus; "
                      f"{escape(b)} = {diff}, paired t {p_values('p_value', 'p_adjusted')}; minimum detectable "
                      f"difference {mdd} at 80 % power, at the observed spread of the differences); not shown "
                      f"equivalent either")
    if kind == "constant":
        diff = sources.num(path, f"{base}.difference.mean", "+" + fmt)
        return Markup(f"every paired difference is {diff} (no test possible)")
    return Markup(escape(verdict.get("verdict", f"{n} paired training seed(s) cannot decide")))


def mean_interval(sources: NumberSources, path: str, key: str, fmt: str = ".3f") -> Markup:
    """``mean [low, high]`` of an ``over_seeds`` entry at ``key``; the mean alone with one seed."""
    data = sources.get(path, key, {}) or {}
    if data.get("mean") is None:
        return Markup("&ndash;")
    mean = sources.num(path, f"{key}.mean", fmt)
    if data.get("low") is None:
        return mean
    return Markup(f"{mean} [{sources.num(path, f'{key}.low', fmt)}, {sources.num(path, f'{key}.high', fmt)}]")
