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
