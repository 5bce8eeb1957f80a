"""What notebooks display: the library's own source, and figures that sliders redraw.

- :func:`show_source` puts a function's real source on the page, so the book never shows a copy
  that could drift from the code the tests check.
- :func:`figure_png` and :func:`image_html` turn a matplotlib figure into an ``<img>`` with alt
  text, the picture embedded in the page (a ``data:`` URI), so it shows with no kernel and no
  network. :func:`course_lib.page.slider.picture_slider` stores one such picture per stop.
"""

from __future__ import annotations

import base64
import html
import inspect
import io
import textwrap
from typing import Any

from IPython.display import Markdown, display


def source_markdown(obj: Any) -> str:
    """Return ``obj``'s source as a fenced Python code block (Markdown)."""
    code = textwrap.dedent(inspect.getsource(obj)).rstrip()
    module = inspect.getmodule(obj)
    origin = f"`{module.__name__}.{obj.__qualname__}`" if module else f"`{obj.__qualname__}`"
    return f"From {origin}:\n\n```python\n{code}\n```"


def show_source(obj: Any) -> None:
    """Display ``obj``'s source, with syntax highlighting, in the cell's output."""
    display(Markdown(source_markdown(obj)))


def figure_png(fig: Any) -> bytes:
    """Render a matplotlib ``Figure`` to PNG bytes.

    Fast compression on purpose; :func:`compact_png` makes pictures that are stored many
    times over (a slider's stops) about three times smaller.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def compact_png(png: bytes) -> bytes:
    """``png`` with at most 256 colors (no dithering) and full compression.

    A plot has few colors besides its anti-aliased edges, so the picture looks the same at
    about a third of the size. Transparency is kept.
    """
    from PIL import Image

    image = Image.open(io.BytesIO(_require_png(png)))
    if image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema()[0] < 255:
        paletted = image.convert("RGBA").quantize(256, method=Image.Quantize.FASTOCTREE,
                                                 dither=Image.Dither.NONE)
    else:
        paletted = image.convert("RGB").quantize(256, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    paletted.save(buffer, format="png", optimize=True)
    return buffer.getvalue()


def png_data_uri(png: bytes) -> str:
    """``png`` as a ``data:image/png;base64,...`` URI, to embed in a page.

    Raises:
        TypeError: if ``png`` is not bytes.
    """
    return "data:image/png;base64," + base64.b64encode(_require_png(png)).decode("ascii")


def _require_png(png: bytes) -> bytes:
    if not isinstance(png, (bytes, bytearray)):
        raise TypeError(f"expected PNG bytes (e.g. from figure_png(fig)), got {type(png).__name__}")
    return bytes(png)


def require_alt(alt: str) -> str:
    """Return ``alt`` if it is a non-empty text alternative, else raise ValueError."""
    if not isinstance(alt, str) or not alt.strip():
        raise ValueError("every image needs alt text that says what it shows; got an empty alt")
    return alt


def image_html(png: bytes, alt: str) -> str:
    """An ``<img>`` tag that embeds ``png`` and describes it with ``alt``.

    Raises:
        ValueError: if ``alt`` is empty (every image in the book needs a text alternative).
        TypeError: if ``png`` is not bytes.
    """
    src = png_data_uri(png)
    return (
        f'<img src="{src}" alt="{html.escape(require_alt(alt), quote=True)}" '
        'style="max-width:100%; height:auto;">'
    )
