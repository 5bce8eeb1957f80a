"""What notebooks display: the library's own source, and figures that sliders redraw.

- :func:`show_source` puts a function's real source on the page, so the book never shows a copy
  that could drift from the code the tests check.
- :func:`figure_png` and :func:`image_html` turn a matplotlib figure into an ``<img>`` with alt
  text. A slider writes that HTML into an ``ipywidgets.HTML``, so the picture is stored with
  the widget's state, the static site can draw it without a kernel, and a screen reader gets a
  description of what the current slider position shows (``ipywidgets.Image`` has no alt text).
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

    Fast compression on purpose: a slider redraw should take well under 100 ms, and the
    bytes are stored in the notebook anyway.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def image_html(png: bytes, alt: str) -> str:
    """An ``<img>`` tag that embeds ``png`` and describes it with ``alt``.

    Raises:
        ValueError: if ``alt`` is empty (every image in the book needs a text alternative).
        TypeError: if ``png`` is not bytes.
    """
    if not isinstance(png, (bytes, bytearray)):
        raise TypeError(f"expected PNG bytes (e.g. from figure_png(fig)), got {type(png).__name__}")
    if not isinstance(alt, str) or not alt.strip():
        raise ValueError("every image needs alt text that says what it shows; got an empty alt")
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt, quote=True)}" '
        'style="max-width:100%; height:auto;">'
    )
