"""Verified building blocks for the Batch Normalization course.

Each formula on the course's pages has exactly one implementation here, tested against
``torch.nn`` and numerical gradients. Chapters import what they need from the modules:

- :mod:`course_lib.normalize` -- standardizing inputs with training statistics.
- :mod:`course_lib.conditioning` -- gradient descent on a quadratic loss, and why scale matters.
- :mod:`course_lib.batchnorm` -- the batch norm transform in numpy, forward and backward.
- :mod:`course_lib.gradcheck` -- numerical gradients, the ground truth for every backward pass.
- :mod:`course_lib.activations` -- where a sigmoid is near-linear and where it saturates.
- :mod:`course_lib.nn` -- ``BatchNorm1d``/``2d``/``3d`` modules written from scratch.
- :mod:`course_lib.data`, :mod:`course_lib.models`, :mod:`course_lib.training` -- bundled data,
  the MLPs of the experiments, and a deterministic training loop.
- :mod:`course_lib.sweeps`, :mod:`course_lib.bias` -- chapter 3's experiments: BN vs. no BN,
  learning-rate and init-scale sweeps; the redundant bias before BN.
- :mod:`course_lib.covariate_shift`, :mod:`course_lib.internal_shift`, :mod:`course_lib.probes`,
  :mod:`course_lib.noisy_bn` -- chapter 4: covariate shift, percentile drift, landscape probes and
  Santurkar et al.'s noisy BN.
- :mod:`course_lib.batch_noise`, :mod:`course_lib.regularization` -- how a mini-batch's statistics
  vary with its size, and how much that regularizes.
- :mod:`course_lib.running_stats` -- exponentially weighted averages in each framework's convention.
- :mod:`course_lib.calibration` -- recomputing BN's statistics after training.
- :mod:`course_lib.inference`, :mod:`course_lib.population_gap` -- what train mode does to test
  predictions, and how far running averages are from the population.
- :mod:`course_lib.fold` -- folding BN into the layer before it for inference.
- :mod:`course_lib.exercises` -- graders for the exercises and their widgets.
- :mod:`course_lib.selfcheck` -- self-check questions that work without a kernel.
- :mod:`course_lib.display`, :mod:`course_lib.plotting` -- showing the library's source; the
  one figure style of the book.

Submodules are not imported here, so ``import course_lib`` stays cheap and does not need torch.
"""

__version__ = "0.1.0"
