"""What notebooks display: the library's own source, and figures that sliders redraw.

- :func:`show_source` puts a function's real source on the page, so the book never shows a copy
  that could drift from the code the tests check.
- :func:`figure_png` and :func:`image_html` turn a matplotlib figure into an ``<img>`` with alt
  text, the picture embedded in the page (a ``data:`` URI), so it shows with no kernel and no
  network. :func:`course_lib.page.slider.picture_slider` stores one such picture per stop.
"""

from __future__ import annotations

import ast
import base64
import html
import inspect
import io
import re
import textwrap
from typing import Any

from IPython.display import Markdown, display


def source_markdown(obj: Any) -> str:
    """Return ``obj``'s source as Markdown: its docstring as text, then its code.

    The docstring is written for Sphinx (``:math:`...```, double backticks, ``.. math::``);
    on a page it is shown rendered, as math and code (:func:`docstring_markdown`), above a
    fenced Python block that holds the rest of the source unchanged.
    """
    code = textwrap.dedent(inspect.getsource(obj)).rstrip()
    module = inspect.getmodule(obj)
    origin = f"`{module.__name__}.{obj.__qualname__}`" if module else f"`{obj.__qualname__}`"
    code, doc = _split_docstring(code)
    text = f"\n\n{docstring_markdown(doc)}" if doc else ""
    return f"From {origin}:{text}\n\n```python\n{code}\n```"


def _split_docstring(code: str) -> tuple[str, str | None]:
    """``code`` without the docstring of the function or class it defines, and the docstring."""
    tree = ast.parse(code)
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return code, None
    doc = ast.get_docstring(node, clean=True)
    if doc is None:
        return code, None
    first = node.body[0]
    lines = code.splitlines()
    kept = lines[: first.lineno - 1] + lines[first.end_lineno:]
    if len(node.body) == 1:  # only a docstring: keep the function valid to read
        kept.insert(first.lineno - 1, " " * first.col_offset + "...")
    return "\n".join(kept), doc


# Sphinx/reST markup in docstrings -> the Markdown (with $...$ math) that pages render.
_ROLE_MATH = re.compile(r":math:`([^`]+)`", re.DOTALL)
_ROLE_XREF = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc):`(~?)([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``", re.DOTALL)
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Yields|Raises|Example|Examples|"
                      r"Note|Notes|Attributes):\s*$")


def _inline(text: str) -> str:
    text = _ROLE_MATH.sub(lambda m: "$" + " ".join(m.group(1).split()) + "$", text)
    # :func:`~a.b.c` shows `c`, as Sphinx does; :func:`a.b.c` shows the whole path.
    text = _ROLE_XREF.sub(
        lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)
    return _LITERAL.sub(lambda m: "`" + " ".join(m.group(1).split()) + "`", text)


def _indented_block(lines: list[str], start: int) -> tuple[list[str], int]:
    """The lines from ``start`` on that are indented (or blank inside the block), dedented."""
    end = start
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith((" ", "\t"))):
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return textwrap.dedent("\n".join(lines[start:end])).splitlines(), end


def docstring_markdown(doc: str) -> str:
    """A cleaned docstring (``inspect.cleandoc``) in the Markdown a page renders.

    ``:math:`x``` becomes ``$x$``, a ``.. math::`` block ``$$ ... $$``, double backticks and
    cross-reference roles (``:func:`~a.b```) code spans; Google-style sections (``Args:``,
    ``Returns:``, ...) become a bold heading with a list of their entries, and an
    ``Example:`` a Python block.
    """
    lines = doc.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(".. math::"):
            first = stripped[len(".. math::"):].strip()
            block, i = _indented_block(lines, i + 1)
            body = "\n".join(([first] if first else []) + [b.strip() for b in block if b.strip()])
            out += ["", "$$", body, "$$", ""]
            continue
        section = _SECTION.match(stripped)
        if section and not line.startswith((" ", "\t")):
            block, i = _indented_block(lines, i + 1)
            name = section.group(1)
            if name in ("Example", "Examples"):
                out += ["", f"**{name}:**", "", "```python", *block, "```", ""]
                continue
            out += ["", f"**{name}:**", ""]
            entries: list[str] = []
            for entry in block:
                if not entry.strip():
                    continue
                if entry.startswith((" ", "\t")) and entries:
                    entries[-1] += " " + entry.strip()
                else:
                    entries.append(entry.strip())
            out += [f"- {_inline(e)}" for e in entries] + [""]
            continue
        out.append(line)
        i += 1
    # Inline markup may span lines: convert each paragraph (not the code and math blocks).
    text, result = "\n".join(out), []
    for chunk in re.split(r"(\n```python\n.*?\n```\n|\n\$\$\n.*?\n\$\$\n)", text,
                          flags=re.DOTALL):
        result.append(chunk if chunk.startswith(("\n```", "\n$$")) else _inline(chunk))
    return re.sub(r"\n{3,}", "\n\n", "".join(result)).strip()


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
