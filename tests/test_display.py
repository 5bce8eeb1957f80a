import base64
import re

import matplotlib.pyplot as plt
import pytest

from course_lib.page.display import figure_png, image_html, source_markdown
from course_lib.gradcheck import rel_error


def test_source_markdown_shows_the_real_source():
    md = source_markdown(rel_error)
    assert md.startswith("From `course_lib.gradcheck.rel_error`")
    assert "def rel_error(" in md and md.rstrip().endswith("```")


def test_image_html_embeds_the_png_with_escaped_alt():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    png = figure_png(fig)
    plt.close(fig)
    assert png.startswith(b"\x89PNG")
    tag = image_html(png, alt='Line from "top" <left> to bottom right')
    src = re.search(r'src="data:image/png;base64,([^"]+)"', tag).group(1)
    assert base64.b64decode(src) == png
    assert 'alt="Line from &quot;top&quot; &lt;left&gt; to bottom right"' in tag


def test_image_html_refuses_missing_alt_and_non_bytes():
    with pytest.raises(ValueError, match="alt text"):
        image_html(b"\x89PNG", alt="  ")
    with pytest.raises(TypeError, match="figure_png"):
        image_html("not bytes", alt="x")


# ---------------------------------------------------------------------------------------------
# What the pages show: short teaching functions that the tests call directly

import ast
import importlib
import inspect
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: A teaching function is about 5-15 lines of code; the longest, the backward pass one graph
#: node per line, has 19. Docstring, blank and comment-only lines do not count.
MAX_BODY_LINES = 20
#: What the page shows, signature and docstring included.
MAX_SHOWN_LINES = 30


def _shown_objects(path: Path) -> list[tuple[str, object]]:
    """``(expression, object)`` for every ``show_source(expr)`` in a notebook's code cells,
    resolved through the notebook's own ``from module import name`` statements."""
    nb = nbformat.read(path, as_version=4)
    trees = [ast.parse(c.source) for c in nb.cells if c.cell_type == "code"
             and not c.source.lstrip().startswith(("%", "!"))]
    names: dict[str, object] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if hasattr(module, alias.name):
                        names[alias.asname or alias.name] = getattr(module, alias.name)
    shown = []
    for tree in trees:
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "show_source"):
                expr = ast.unparse(node.args[0])
                head, *attrs = expr.split(".")
                obj = names[head]
                for attr in attrs:
                    obj = getattr(obj, attr)
                shown.append((expr, obj))
    return shown


def _body_lines(obj: object) -> int:
    """Lines of code in a function's body: no signature, docstring, blanks or comments."""
    source = textwrap.dedent(inspect.getsource(obj))
    fn = ast.parse(source).body[0]
    body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
    lines = source.splitlines()[body[0].lineno - 1 : fn.end_lineno]
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


SHOWN = [(path.stem, expr, obj) for path in NOTEBOOKS for expr, obj in _shown_objects(path)]
TEST_SOURCES = {p.name: p.read_text() for p in (ROOT / "tests").glob("test_*.py")}


def test_the_pages_show_some_source():
    assert len(SHOWN) >= 8, SHOWN


@pytest.mark.parametrize("chapter, expr, obj", SHOWN, ids=[f"{c}:{e}" for c, e, _ in SHOWN])
def test_each_shown_function_is_a_short_teaching_function(chapter, expr, obj):
    assert inspect.isfunction(obj), (
        f"{chapter} shows {expr}, a {type(obj).__name__}; show a function (a teaching "
        "function or one method), not a class or module")
    shown = len(inspect.getsource(obj).rstrip().splitlines())
    assert _body_lines(obj) <= MAX_BODY_LINES and shown <= MAX_SHOWN_LINES, (
        f"{chapter} shows {expr}: {_body_lines(obj)} lines of code, {shown} in all; a page "
        f"shows a teaching function of about 5-15 lines (at most {MAX_BODY_LINES}, "
        f"{MAX_SHOWN_LINES} with its docstring)")


@pytest.mark.parametrize("chapter, expr, obj", SHOWN, ids=[f"{c}:{e}" for c, e, _ in SHOWN])
def test_each_shown_function_is_called_directly_by_the_tests(chapter, expr, obj):
    owner, _, name = obj.__qualname__.rpartition(".")
    if owner:  # a method: some test names its class and calls the method by name
        callers = [f for f, text in TEST_SOURCES.items()
                   if re.search(rf"\b{owner}\b", text) and re.search(rf"\.{name}\(", text)]
    else:
        callers = [f for f, text in TEST_SOURCES.items() if re.search(rf"\b{name}\(", text)]
    assert callers, (
        f"{chapter} shows {expr}, but no test calls {obj.__qualname__} directly; the page "
        "must show the very function the tests verify")
