"""The lab: what every experiment stands on.

- :mod:`~course_lib.experiments.lab.data`: the bundled digits and the generated tasks.
- :mod:`~course_lib.experiments.lab.models`: the MLP builder and the normalization layers by name.
- :mod:`~course_lib.experiments.lab.training`: the one training loop.
- :mod:`~course_lib.experiments.lab.model_state`: looking at a model without changing it.

Imports point down: the lab imports only the verified core (``course_lib``), never a probe or
a chapter's experiment.
"""
