"""Verified building blocks for the Batch Normalization course.

Each formula on the course's pages has exactly one implementation here, tested against
``torch.nn`` and numerical gradients. Chapters import what they need from the modules:

- :mod:`course_lib.normalize` -- standardizing inputs with training statistics.
- :mod:`course_lib.conditioning` -- gradient descent on a quadratic loss, and why scale matters.
- :mod:`course_lib.batchnorm` -- the batch norm transform in numpy, forward and backward.
- :mod:`course_lib.nn` -- ``BatchNorm1d``/``BatchNorm2d`` modules written from scratch.
- :mod:`course_lib.exercises` -- graders for the exercises and their widgets.
- :mod:`course_lib.selfcheck` -- self-check questions that work without a kernel.
- :mod:`course_lib.plotting` -- the one figure style of the book.

Submodules are not imported here, so ``import course_lib`` stays cheap and does not need torch.
"""

__version__ = "0.1.0"
