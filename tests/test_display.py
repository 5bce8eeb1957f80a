import base64
import re

import matplotlib.pyplot as plt
import pytest

from course_lib.page.display import compact_png, figure_png, image_html, png_data_uri, source_markdown
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


def test_compact_png_keeps_the_picture_and_its_size():
    from io import BytesIO

    import numpy as np
    from PIL import Image

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(np.linspace(0, 1, 50), np.sin(np.linspace(0, 6, 50)))
    png = figure_png(fig)
    plt.close(fig)
    small = compact_png(png)
    before, after = Image.open(BytesIO(png)), Image.open(BytesIO(small))
    assert after.size == before.size and len(small) < len(png)
    diff = np.abs(np.asarray(before.convert("RGB"), float) - np.asarray(after.convert("RGB"), float))
    assert diff.mean() < 2.0, "256 colors should look the same as the original"
    with pytest.raises(TypeError, match="figure_png"):
        compact_png("not bytes")


def test_png_data_uri_round_trips():
    uri = png_data_uri(b"\x89PNG-bytes")
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == b"\x89PNG-bytes"


def test_docstrings_render_as_math_and_code():
    from course_lib.page.display import docstring_markdown

    doc = ("Scale by :math:`\\gamma` and shift by ``beta``, see :func:`~a.b.fold`.\n\n"
           ".. math:: y = \\gamma\n    z + \\beta\n\n"
           "Args:\n    x: the input,\n        any shape.\n\nExample:\n    >>> f(1)\n    2")
    md = docstring_markdown(doc)
    assert "$\\gamma$" in md
    assert "`beta`" in md
    assert "`fold`" in md
    assert "$$\ny = \\gamma\nz + \\beta\n$$" in md
    assert "- x: the input, any shape." in md
    assert "```python\n>>> f(1)\n2\n```" in md
    assert ":math:" not in md
    assert "``" not in md.replace("```", "")


def test_source_markdown_puts_the_docstring_above_the_code():
    def scale(x):
        """Multiply by :math:`2`."""
        return 2 * x

    md = source_markdown(scale)
    assert "Multiply by $2$." in md
    code = md.split("```python\n", 1)[1]
    assert code.startswith("def scale(x):\n    return 2 * x")
    assert '"""' not in code
