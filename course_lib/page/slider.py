"""Sliders that work without a kernel: every stop's picture is drawn once and stored.

A chapter's slider is one HTML output: a native ``<input type="range">``, a readout, an
``<img>`` with alt text, and every stop's picture and alt text embedded once, swapped by a
few lines of JavaScript in the reader's browser. Nothing runs in Python when it moves, so it
behaves the same on the static site (no kernel, no network), in JupyterLab and in Colab, and
the keyboard works as on any range input (arrows, Page Up/Down, Home, End).

Example (a chapter draws each stop with its own function, then shows the slider):

.. code-block:: python

    from course_lib.page.slider import picture_slider

    def draw(gamma):                      # one stop -> PNG bytes
        fig = Figure(figsize=(9, 3.3))
        ...
        return figure_png(fig)

    picture_slider(
        "γ", np.arange(0.25, 5.01, 0.25), value=1.0, draw=draw,
        alt=lambda g: f"Histogram of the sigmoid's input for gamma = {g:g}, ...",
        readout="{:.2f}",
    )

The call's result displays itself when it ends a cell (or pass it to ``display``). Keep the
stops to a few dozen: each is a stored PNG (made compact: about 5-20 kB).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Callable, Sequence
from typing import Any

from IPython.display import HTML

from course_lib.page.display import compact_png, png_data_uri, require_alt

# Runs once per slider, in the output itself: finds its own slider (the script's parent), and
# on every move shows the stored picture, alt text and readout of the chosen stop.
_SCRIPT = """(function (root) {
  if (!root || root.getAttribute("data-ready")) return;
  root.setAttribute("data-ready", "1");
  var stops = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  var input = root.querySelector("input[type='range']");
  var image = root.querySelector("img");
  var readout = root.querySelector("output");
  function show() {
    var k = Number(input.value);
    image.src = stops.srcs[k];
    image.alt = stops.alts[k];
    readout.textContent = stops.readouts[k];
    input.setAttribute("aria-valuetext", stops.label + " = " + stops.readouts[k]);
  }
  input.addEventListener("input", show);
  input.addEventListener("change", show);
  // Arrow keys move the slider, not the notebook's cell selection.
  input.addEventListener("keydown", function (event) { event.stopPropagation(); });
  show();
})(document.currentScript && document.currentScript.closest(".course-slider")
   || document.getElementById("%(id)s"));"""


def _json_for_script(data: Any) -> str:
    # Inside <script>, "</" would end the tag early; \\u003c keeps the JSON equal.
    return json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")


def picture_slider(
    label: str,
    stops: Sequence[Any],
    *,
    value: Any,
    draw: Callable[[Any], bytes],
    alt: Callable[[Any], str],
    readout: str | Callable[[Any], str] = "{:g}",
) -> HTML:
    """A slider over ``stops`` that shows ``draw(stop)`` described by ``alt(stop)``.

    Args:
        label: the slider's name, shown before it (plain text, e.g. ``"γ"``).
        stops: the values the slider can take, in order (evenly spaced or not: the slider
            moves one stop per step, so log-spaced or listed values work alike).
        value: the stop shown first; must be one of ``stops`` (compared after rounding to
            12 significant digits, so ``1.0`` finds ``np.float64(1.0000000000000002)``).
        draw: ``stop -> PNG bytes``, e.g. :func:`~course_lib.page.display.figure_png` of a
            figure drawn for that stop. Called once per stop, here.
        alt: ``stop -> text`` that says what that stop's picture shows.
        readout: format string or ``stop -> text`` for the number shown beside the slider.

    Returns:
        An ``IPython.display.HTML`` holding the slider, the pictures and the script.

    Raises:
        ValueError: if ``stops`` is empty, ``value`` is not a stop, or an alt text is empty.
        TypeError: if ``draw`` returns something other than PNG bytes.
    """
    stops = list(stops)
    if not stops:
        raise ValueError("a slider needs at least one stop; got an empty list of stops")
    if not isinstance(label, str) or not label.strip():
        raise ValueError("a slider needs a label that names what it changes, e.g. 'γ'")
    show_value = readout.format if isinstance(readout, str) else readout
    keys = [_key(stop) for stop in stops]
    if _key(value) not in keys:
        raise ValueError(
            f"value {value!r} is not one of the slider's stops "
            f"({show_value(stops[0])} ... {show_value(stops[-1])}); start the slider on a stop"
        )
    start = keys.index(_key(value))

    srcs = [png_data_uri(compact_png(draw(stop))) for stop in stops]
    alts = [require_alt(alt(stop)) for stop in stops]
    readouts = [str(show_value(stop)) for stop in stops]

    # The id comes from what the slider shows in words, not from the PNG bytes (which differ
    # between machines): running the notebook again gives the same HTML up to the pictures.
    words = json.dumps([label, readouts, alts], ensure_ascii=False)
    slider_id = "course-slider-" + hashlib.sha256(words.encode()).hexdigest()[:12]
    stored = _json_for_script({"label": label, "readouts": readouts, "alts": alts,
                               "srcs": srcs})
    escape = html.escape
    return HTML(
        f'<div class="course-slider" id="{slider_id}">\n'
        '<div class="course-slider-controls" style="display:flex; align-items:center; '
        'gap:0.75em; flex-wrap:wrap; margin:0.25em 0 0.5em;">\n'
        f'<label for="{slider_id}-input" style="min-width:2em; text-align:right;">'
        f"{escape(label)}</label>\n"
        f'<input type="range" id="{slider_id}-input" min="0" max="{len(stops) - 1}" '
        f'step="1" value="{start}" '
        f'aria-valuetext="{escape(label)} = {escape(readouts[start])}" '
        'style="flex:1 1 12em; max-width:24em; margin:0;">\n'
        f'<output for="{slider_id}-input" style="min-width:3.5em; '
        'font-variant-numeric:tabular-nums;">'
        f"{escape(readouts[start])}</output>\n"
        "</div>\n"
        f'<img src="{srcs[start]}" alt="{escape(alts[start], quote=True)}" '
        'style="max-width:100%; height:auto;">\n'
        f'<script type="application/json">{stored}</script>\n'
        f"<script>{_SCRIPT % {'id': slider_id}}</script>\n"
        "</div>"
    )


def _key(stop: Any) -> Any:
    try:
        return float(f"{float(stop):.12g}")
    except (TypeError, ValueError):
        return stop


def stored_pictures(slider: HTML) -> list[bytes]:
    """The PNG bytes of every stop stored in ``slider`` (for tests and checks)."""
    text = slider.data
    stored = text.split('<script type="application/json">', 1)[1].split("</script>", 1)[0]
    return [base64.b64decode(src.split(",", 1)[1]) for src in json.loads(stored)["srcs"]]
