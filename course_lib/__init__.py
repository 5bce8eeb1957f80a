"""Verified building blocks for the Batch Normalization course.

Each formula on the course's pages has exactly one implementation here, tested against
``torch.nn`` and numerical gradients. The folders are the layers; imports only point down:

- ``course_lib`` itself, the verified core: every formula, checked against torch and numerical
  gradients. :mod:`~course_lib.normalize` (standardizing inputs),
  :mod:`~course_lib.batchnorm` (the transform in numpy, forward and backward),
  :mod:`~course_lib.normalization` (normalizing over chosen axes: the statistics and the
  arithmetic every normalization shares), :mod:`~course_lib.nn` (``BatchNorm1d``/``2d``/``3d``
  from scratch), :mod:`~course_lib.norm_layers` (layer, group and instance norm, batch renorm,
  ghost batch norm), :mod:`~course_lib.borrow` (finding a model's batch norm layers, borrowing
  a model and leaving it as found),
  :mod:`~course_lib.running_stats` (running averages in each framework's convention),
  :mod:`~course_lib.calibration` (recomputing BN's statistics), :mod:`~course_lib.fold`
  (folding BN into the layer before it), :mod:`~course_lib.activations` (a sigmoid's regimes),
  :mod:`~course_lib.gradcheck` (numerical gradients), ``_checks`` (input validation).
- :mod:`course_lib.distributed`: batch norm across processes (``SyncBatchNorm`` from scratch);
  part of the core, it imports nothing above it. The data-parallel training script that uses
  it, ``python -m course_lib.experiments.lab.data_parallel``, is an experiment.
- :mod:`course_lib.experiments`: the experiments behind each chapter's claims, and the data,
  models, training loop and probes they share.
- :mod:`course_lib.exercises`: graders (pure functions) and their widgets.
- :mod:`course_lib.page`: what the pages use to show things: source listings, the one figure
  style, self-check questions.

Maintainer tooling (executing notebooks, the benchmark) lives outside the package, in
``tools/``, and is never installed with it.

Submodules are not imported here, so ``import course_lib`` stays cheap and does not need torch.
"""

__version__ = "0.1.0"
