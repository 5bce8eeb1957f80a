"""Page helpers: showing source, the one figure style, self-check questions, sliders.

Everything a chapter shows must work on the static website, with no kernel and no network.
Two recipes for chapter authors:

A slider (``course_lib.page.slider``): draw every stop once, store them all in the page::

    from course_lib.page.display import figure_png
    from course_lib.page.slider import picture_slider

    def draw(gamma):                     # one stop -> PNG bytes; a fresh Figure per stop
        fig = Figure(figsize=(9, 3.3), layout="none")
        ...
        return figure_png(fig)

    picture_slider("γ", np.arange(0.25, 5.01, 0.25), value=1.0, draw=draw,
                   alt=lambda g: f"... for gamma = {g:g} ...", readout="{:.2f}")

  The cell's output is plain HTML (a range input, a readout, the picture and its alt text);
  a few lines of JavaScript in it swap the stored pictures, the same on the site, in
  JupyterLab and in Colab. Do not use ipywidgets sliders: on the site they move but redraw
  nothing (tests/test_site.py fails on them).

A self-check (``course_lib.page.selfcheck``): one ``show([...])`` call, in a cell tagged
``remove-input``, with jupyterquiz-style question dicts. Write the right answer anywhere:
``show`` places the options so the right one's position varies across the chapter. Make each
distractor a real mistake, about as long as the right answer (tests/test_site.py checks both).
Text may use ``$...$`` math and Markdown code spans.

Layout: code lines <= 88 characters, printed lines <= 80, display equations that fit a
744 px column and, set at 70 % by book/_static/course.js, a phone's 358 px one (about 45
characters of TeX output per line: break long ones into lines with ``aligned``, one
relation per line), tables of a few short columns with the row's name first (on a phone the
first column stays in view while the rest scrolls). tests/test_site.py measures all of it.
"""
