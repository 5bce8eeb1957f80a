"""Where each chapter's notebook lives, and the links that open it in Colab and Binder.

The exercise card (:func:`course_lib.exercises.feedback_html` of an exercise not filled in
yet) is stored in the chapter's output, so it must work on the static site, where no kernel
runs: it links to the chapter on Colab and Binder. The repository and branch are those of
``_config.yml``'s ``repository:`` entry and the notebook paths those of ``notebooks/``;
``tests/test_exercises.py`` checks both, so they cannot drift (course_lib is installed
without the book, so it cannot read ``_config.yml`` on Colab).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["REPOSITORY", "BRANCH", "NOTEBOOKS", "Launch", "launch_links", "chapter_of"]

#: The course's repository and branch, as in ``_config.yml`` ``repository: url / branch``.
REPOSITORY = "https://github.com/batchnorm-course/batchnorm-course"
BRANCH = "main"

#: chapter number -> the chapter's notebook, relative to the repository root.
NOTEBOOKS = {
    1: "notebooks/01_normalizing_inputs.ipynb",
    2: "notebooks/02_batchnorm_transform.ipynb",
    3: "notebooks/03_bn_in_a_network.ipynb",
    4: "notebooks/04_covariate_shift.ipynb",
    5: "notebooks/05_bn_as_regularizer.ipynb",
    6: "notebooks/06_bn_at_test_time.ipynb",
    7: "notebooks/07_deep_and_conv_nets.ipynb",
    8: "notebooks/08_small_and_split_batches.ipynb",
    9: "notebooks/09_build_it_yourself.ipynb",
}


@dataclass(frozen=True)
class Launch:
    """The ways to run one chapter: its notebook path and its Colab and Binder links."""

    notebook: str
    colab: str
    binder: str


def chapter_of(description: str) -> int | None:
    """The chapter an exercise description names at its end, ``"... (chapter 7)"``."""
    found = re.search(r"\(chapter (\d+)\)\s*$", description)
    return int(found.group(1)) if found else None


def launch_links(chapter: int | None) -> Launch:
    """Colab and Binder links for ``chapter``'s notebook (the notebooks folder if unknown)."""
    owner_repo = REPOSITORY.removeprefix("https://github.com/").strip("/")
    path = NOTEBOOKS.get(chapter, "notebooks") if chapter is not None else "notebooks"
    if path.endswith(".ipynb"):
        colab = f"https://colab.research.google.com/github/{owner_repo}/blob/{BRANCH}/{path}"
    else:  # Colab opens single notebooks only: its GitHub browser for the folder
        colab = f"https://colab.research.google.com/github/{owner_repo}/blob/{BRANCH}/"
    binder = f"https://mybinder.org/v2/gh/{owner_repo}/{BRANCH}?urlpath=lab/tree/{path}"
    return Launch(path, colab, binder)
