import matplotlib as mpl
import matplotlib.pyplot as plt

from course_lib.page import plotting


def test_every_color_of_the_cycle_has_its_own_line_style():
    cycle = list(plotting.STYLE["axes.prop_cycle"])
    assert len(cycle) == len(plotting.CYCLE)
    assert len({str(entry["linestyle"]) for entry in cycle}) == len(cycle)


def test_lines_with_explicit_colors_still_differ_by_style():
    with mpl.rc_context():
        plotting.use_style()
        fig, ax = plt.subplots()
        first, = ax.plot([0, 1], [0, 1], color=plotting.COLORS["no_bn"])
        second, = ax.plot([0, 1], [1, 0], color=plotting.COLORS["bn"])
        plt.close(fig)
    assert first.get_linestyle() != second.get_linestyle()
