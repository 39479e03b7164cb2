"""Figure plumbing shared by every plot w2vprof draws: a blank figure in, PNG bytes out.

Imports nothing else of w2vprof, so both report/ and fl/ can use it without depending on each other. matplotlib
is imported inside the functions (`w2vprof --help` never loads it). Figures are built with matplotlib's
object API (`matplotlib.figure.Figure`), not pyplot: no global figure registry to close, no backend to switch,
and nothing needs a display.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["DPI", "new_figure", "figure_png", "integer_ticks"]

#: Pixels per inch of every PNG: a 9 x 4.5 inch figure is about 1000 x 500 pixels.
DPI = 110


def new_figure(width: float = 9.0, height: float = 4.5, rows: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure of `rows` stacked axes sharing its width; `height` is per row."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height * rows), dpi=DPI)
    axes = figure.subplots(rows, 1, squeeze=False)
    return figure, [row[0] for row in axes]


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes, laid out so labels are not clipped."""
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def integer_ticks(axes: Axes) -> None:
    """Whole-number ticks on the x axis (rounds, steps): no 'round 1.5'."""
    from matplotlib.ticker import MaxNLocator

    locator = axes.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):  # the default AutoLocator is one: keep its spacing, only whole numbers
        locator.set_params(integer=True)
