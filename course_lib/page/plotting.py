"""The book's one figure style, so every figure looks like it belongs to the same course.

Colors come from the Okabe-Ito palette, which stays distinguishable for the common forms of
color blindness, and each recurring idea keeps its color across chapters: "no batch norm" is
always vermillion, "batch norm" always blue, and so on. Curves are told apart by line style
too (the property cycle pairs each color with a dash pattern), never by color alone. Call
:func:`use_style` once per notebook, right after the imports.

Example:
    >>> from course_lib.page.plotting import use_style, COLORS
    >>> use_style()
    >>> import matplotlib.pyplot as plt
    >>> _ = plt.plot([0, 1], [0, 1], color=COLORS["bn"], label="with BN")
"""

from __future__ import annotations

from typing import Any

import matplotlib as mpl
from cycler import cycler

#: Okabe & Ito (2008), "Color Universal Design": safe for deuteranopia, protanopia, tritanopia.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

#: Colors by meaning. Use these names, not raw hex codes, in notebooks.
COLORS: dict[str, str] = {
    "raw": OKABE_ITO["vermillion"],
    "standardized": OKABE_ITO["blue"],
    "no_bn": OKABE_ITO["vermillion"],
    "bn": OKABE_ITO["blue"],
    "bn_after": OKABE_ITO["sky_blue"],
    "noisy_bn": OKABE_ITO["bluish_green"],
    "dropout": OKABE_ITO["orange"],
    "train": OKABE_ITO["blue"],
    "test": OKABE_ITO["orange"],
    "theory": OKABE_ITO["black"],
    "highlight": OKABE_ITO["reddish_purple"],
}

#: Cycle for lines that have no fixed meaning (yellow is left out: too pale on white).
CYCLE: list[str] = [
    OKABE_ITO[name]
    for name in ("blue", "orange", "bluish_green", "vermillion", "reddish_purple", "sky_blue", "black")
]

#: Dash patterns that go with CYCLE, one per color: curves differ by line style as well as
#: by color, so a reader who cannot tell the colors apart (or prints in gray) still can.
#: A line drawn with an explicit ``color=`` and no ``linestyle=`` takes the next pattern too.
LINESTYLES: list[Any] = ["-", "--", "-.", ":", (0, (5, 1.5, 1, 1.5, 1, 1.5)),
                         (0, (8, 2)), (0, (1, 3))]

#: A perceptually uniform, color-blind-friendly colormap for contours and images.
CMAP = "viridis"

STYLE: dict[str, Any] = {
    "figure.figsize": (7.0, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.constrained_layout.use": True,
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "legend.fontsize": 11,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "axes.prop_cycle": cycler(color=CYCLE) + cycler(linestyle=LINESTYLES),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 2.0,
    "image.cmap": CMAP,
    "legend.frameon": False,
}


def use_style() -> None:
    """Apply the book's figure style to matplotlib's global settings."""
    mpl.rcParams.update(STYLE)
