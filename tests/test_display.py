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
