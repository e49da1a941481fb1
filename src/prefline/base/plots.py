"""Figures for the HTML reports: matplotlib on the Agg backend, rendered to PNG.

One place for backend selection and figure → PNG/data-URI conversion, so every report
(audit, reward evaluation, policy evaluation, demo) renders the same way without a display.
"""

from __future__ import annotations

import base64
import io
from typing import Any

Figure = Any


def use_agg() -> None:
    """Select the Agg backend (no display needed); call before pyplot is imported."""
    import matplotlib

    matplotlib.use("Agg")


def new_figure(width: float = 6.0, height: float = 3.2) -> tuple[Figure, Any]:
    use_agg()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    return fig, ax


def png_bytes(fig: Figure, dpi: float | None = None, tight: bool = False) -> bytes:
    """Render and close ``fig``; PNG bytes. ``tight`` crops to the drawn area."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    if tight:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    else:
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def png_base64(fig: Figure, dpi: float | None = None) -> str:
    """Render and close ``fig``; base64 of its (tightly cropped) PNG."""
    return base64.b64encode(png_bytes(fig, dpi=dpi, tight=True)).decode("ascii")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
