"""Show the library's own source on a page, so the book never shows a copy that could drift."""

from __future__ import annotations

import inspect
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
