"""Building blocks of the self-contained HTML report: numbers traced to files, inline figures, embedded plotly.

Every number the report prints comes from a JSON file in the study folder and carries its source:
``<span class="num" data-source="runs/gaussian-vae/metrics.json" data-key="test_frobenius.mean">``,
so a reader (or a test) can check each one against the files.
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import plotly.io
from markupsafe import Markup, escape
from matplotlib.figure import Figure

from ..errors import AtlasError
from ..io import read_json, write_bytes, write_text


def lookup(data: Any, key: str) -> Any:
    """Follow a dotted key (``a.b.0.c``) through nested dicts and lists."""
    value = data
    for part in key.split("."):
        if isinstance(value, list):
            value = value[int(part)]
        else:
            value = value[part]
    return value


def format_number(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return str(value)
    return format(value, fmt)


class NumberSources:
    """JSON files under the study folder, read once, from which the report takes every number."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._files: dict[str, Any] = {}

    def data(self, source: str) -> Any:
        if source not in self._files:
            self._files[source] = read_json(self.root / source, what="report source")
        return self._files[source]

    def get(self, source: str, key: str, default: Any = None) -> Any:
        """The value, or ``default`` when the key or the whole file is absent (a section the study left out)."""
        if source not in self._files and not (self.root / source).is_file():
            return default
        try:
            return lookup(self.data(source), key)
        except (KeyError, IndexError, ValueError, TypeError):
            return default

    def num(self, source: str, key: str, fmt: str = ".3f") -> Markup:
        try:
            value = lookup(self.data(source), key)
        except (KeyError, IndexError, ValueError, TypeError):
            raise AtlasError(f"report: {source} has no value at {key}") from None
        return Markup(
            f'<span class="num" data-source="{escape(source)}" data-key="{escape(key)}" '
            f'data-format="{escape(fmt)}">{escape(format_number(value, fmt))}</span>'
        )


class FigureStore:
    """Saves each figure as a PNG (or an interactive plot as an HTML fragment) in the figures folder and records
    it in a manifest, so that figures can be drawn by separate tasks and inlined into the report afterwards."""

    def __init__(self, folder: Path, dpi: int = 90):
        self.folder = Path(folder)
        self.dpi = dpi
        self.manifest: dict[str, dict[str, str]] = {}

    def png(self, key: str, figure: Figure, alt: str, dpi: int | None = None) -> None:
        name = key.replace("/", "-")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi or self.dpi, bbox_inches="tight")
        write_bytes(self.folder / f"{name}.png", buffer.getvalue())
        self.manifest[key] = {"kind": "png", "file": f"{name}.png", "alt": alt}

    def interactive(self, key: str, figure, alt: str) -> None:
        name = key.replace("/", "-")
        write_text(self.folder / f"{name}.html", str(plotly_div(figure, alt)))
        self.manifest[key] = {"kind": "html", "file": f"{name}.html", "alt": alt}


def inline_figure(folder: Path, entry: dict[str, str]) -> Markup:
    """A manifest entry as HTML: a PNG inlined as base64 with its caption, or an interactive plot's fragment."""
    path = Path(folder) / entry["file"]
    if entry["kind"] == "html":
        return Markup(path.read_text(encoding="utf-8"))
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    alt, name = escape(entry["alt"]), escape(entry["file"])
    return Markup(f'<figure><img src="data:image/png;base64,{encoded}" alt="{alt}" data-file="figures/{name}">'
                  f"<figcaption>{alt}</figcaption></figure>")


def plotly_div(figure, alt: str) -> Markup:
    """A plotly figure as a div; plotly.js itself is embedded once in the page head."""
    html = plotly.io.to_html(
        figure, full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True}
    )
    return Markup(f'<figure class="interactive">{html}<figcaption>{escape(alt)}</figcaption></figure>')


def plotly_js() -> Markup:
    """The plotly.js bundle shipped inside the plotly package, inlined so the report works offline."""
    from plotly.offline import get_plotlyjs

    return Markup(get_plotlyjs().replace("</script", "<\\/script"))


def json_pretty(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
