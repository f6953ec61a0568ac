"""Shared checks for matplotlib figures: they render to PNG, have the expected panels, and lines by gid."""

from __future__ import annotations

import io

from matplotlib.figure import Figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=30)
    return buffer.getvalue()


def assert_renders(fig: Figure, n_axes: int) -> None:
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes
    assert png_bytes(fig).startswith(PNG_MAGIC)


def by_gid(ax, prefix: str) -> dict:
    """Every line of ``ax`` whose gid starts with ``prefix``, keyed by gid."""
    return {line.get_gid(): line for line in ax.lines if (line.get_gid() or "").startswith(prefix)}
