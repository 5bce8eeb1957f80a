"""What the chapters show with ``show_source``: short teaching functions that the tests call.

A page that shows code shows the library's own teaching function, in the lecture's notation,
the very function the tests verify; input checks and bookkeeping live in the public API
around it. This test reads every chapter's ``show_source(...)`` calls, resolves each object
through the notebook's own imports, and fails if a page shows something other than a
function or method, a function longer than a teaching function, a line wider than the house
rule's 88 characters, or a function no test calls directly.
"""
import ast
import importlib
import inspect
import re
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: A teaching function is about 5-15 lines of code; the longest, the backward pass one graph
#: node per line, has 17. Docstring, blank and comment-only lines do not count.
MAX_BODY_LINES = 17
#: What the page shows, signature and docstring included.
MAX_SHOWN_LINES = 30
#: The house rule for code lines; the site's column fits it at 1280 px.
MAX_LINE_CHARS = 88


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
    lines = textwrap.dedent(inspect.getsource(obj)).rstrip().splitlines()
    assert _body_lines(obj) <= MAX_BODY_LINES and len(lines) <= MAX_SHOWN_LINES, (
        f"{chapter} shows {expr}: {_body_lines(obj)} lines of code, {len(lines)} in all; a "
        f"page shows a teaching function of about 5-15 lines (at most {MAX_BODY_LINES}, "
        f"{MAX_SHOWN_LINES} with its docstring)")
    wide = [line for line in lines if len(line) > MAX_LINE_CHARS]
    assert not wide, f"{chapter} shows {expr} with lines over {MAX_LINE_CHARS} characters: {wide}"


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
