import base64
import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from course_lib.page.display import figure_png
from course_lib.page.slider import picture_slider, stored_pictures


def draw(value):
    fig = Figure(figsize=(2, 1.5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, value])
    ax.set_ylim(-2, 2)
    return figure_png(fig)


def alt(value):
    return f"A line rising to {value:g} <at the right>"


def make(**changes):
    args = dict(label="γ", stops=np.arange(0.5, 2.01, 0.5), value=1.0, draw=draw, alt=alt,
                readout="{:.2f}")
    args.update(changes)
    return picture_slider(args.pop("label"), args.pop("stops"), **args)


def stored(slider):
    text = slider.data
    return json.loads(text.split('<script type="application/json">')[1].split("</script>")[0])


def test_every_stop_is_stored_with_its_alt_and_readout():
    slider = make()
    data = stored(slider)
    assert data["label"] == "γ"
    assert data["readouts"] == ["0.50", "1.00", "1.50", "2.00"]
    assert data["alts"] == [alt(v) for v in (0.5, 1.0, 1.5, 2.0)]
    pictures = stored_pictures(slider)
    assert len(pictures) == 4 and len(set(pictures)) == 4
    assert all(p.startswith(b"\x89PNG") for p in pictures)


def test_starts_on_the_given_stop_with_keyboard_ready_range_input():
    text = make().data
    rng = re.search(r'<input type="range"[^>]*>', text).group(0)
    assert 'min="0"' in rng and 'max="3"' in rng and 'step="1"' in rng and 'value="1"' in rng
    assert 'aria-valuetext="γ = 1.00"' in rng
    assert re.search(r"<output[^>]*>1.00</output>", text)
    img = re.search(r'<img src="(data:image/png;base64,[^"]+)" alt="([^"]+)"', text)
    assert img.group(2) == "A line rising to 1 &lt;at the right&gt;"
    first = base64.b64decode(img.group(1).split(",", 1)[1])
    assert first == stored_pictures(make())[1]
    assert "<label" in text and "γ</label>" in text


def test_stored_json_cannot_close_its_script_tag():
    text = make(alt=lambda v: f"</script><b>{v}</b>").data
    data_part = text.split('<script type="application/json">')[1].split("</script>")[0]
    assert json.loads(data_part)["alts"][0] == "</script><b>0.5</b>"


def test_output_is_the_same_up_to_the_png_bytes():
    # nbval compares the stored HTML with the sanitize rule in tests/nbval_sanitize.cfg.
    strip = lambda s: re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "PNG", s)  # noqa: E731
    assert strip(make().data) == strip(make().data)
    ids = {re.search(r'id="(course-slider-[0-9a-f]+)"', make(value=v).data).group(1)
           for v in (0.5, 1.0)}
    assert len(ids) == 1, "the id depends on what the slider shows, not where it starts"
    assert make(label="β").data != make().data


def test_pictures_are_stored_compactly():
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.contourf(*np.meshgrid(np.linspace(-1, 1, 80), np.linspace(-1, 1, 80)),
                np.random.default_rng(0).normal(size=(80, 80)).cumsum(0), levels=15)
    raw = figure_png(fig)
    plt.close(fig)
    slider = picture_slider("s", [1, 2], value=1, draw=lambda v: raw, alt=alt)
    assert len(stored_pictures(slider)[0]) < 0.7 * len(raw)


def test_uneven_and_listed_stops_work():
    slider = picture_slider("m", [2, 4, 8, 512], value=8, draw=draw, alt=alt)
    assert stored(slider)["readouts"] == ["2", "4", "8", "512"]
    assert 'value="2"' in slider.data
    log_stops = 10.0 ** np.arange(-2.5, 0.01, 0.25)
    slider = picture_slider("momentum", log_stops, value=0.1, draw=draw, alt=alt,
                            readout="{:.3g}")
    assert stored(slider)["readouts"][6] == "0.1"


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"stops": []}, ValueError, "at least one stop"),
        ({"value": 1.25}, ValueError, "not one of the slider's stops"),
        ({"alt": lambda v: " "}, ValueError, "alt text"),
        ({"draw": lambda v: "not a png"}, TypeError, "PNG bytes"),
        ({"label": ""}, ValueError, "label"),
    ],
)
def test_bad_input_names_the_problem(changes, error, match):
    with pytest.raises(error, match=match):
        make(**changes)
