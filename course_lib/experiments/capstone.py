r"""Chapter 9's experiments: the numpy network of :mod:`course_lib.numpy_net`, trained on the
digits, and the same network in torch.

- :func:`digits_arrays` -- the bundled digits as float64 numpy arrays;
- :func:`train_numpy_net` -- the lecture's loop (mini-batches, forward in training mode,
  backward, a momentum step, the running statistics), then the test accuracy in evaluation
  mode;
- :func:`to_torch` -- the numpy network's weights and running statistics loaded into the course's
  torch model (:func:`course_lib.experiments.lab.models.make_mlp`, ReLU, batch norm before
  each activation), in float64;
- the claim ``numpy-net-bn-large-lr``: at a learning rate that the plain network survives
  the two train alike; at a large one only the network with batch norm trains, and the plain
  one ends at chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from course_lib import numpy_net
from course_lib.experiments import claims
from course_lib.experiments.lab.data import Split, load_digits_split
from course_lib.experiments.lab.models import make_mlp

__all__ = ["CapstoneSettings", "digits_arrays", "train_numpy_net", "to_torch",
           "bn_trains_at_large_lr"]


def digits_arrays(data: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, y_train, X_test, y_test)`` of a split as numpy arrays, inputs in float64."""
    return (data.X_train.double().numpy(), data.y_train.numpy(),
            data.X_test.double().numpy(), data.y_test.numpy())


def train_numpy_net(
    data: Split, sizes: list[int], *, bn: bool, lr: float, epochs: int = 2,
    batch_size: int = 64, beta_avg: float = 0.9, seed: int = 0,
) -> dict:
    """Train a fresh numpy network and return its parameters, running statistics, the loss of
    every step and the test accuracy in evaluation mode.

    A run whose loss is no longer finite at the end of an epoch stops there; its accuracy is
    that of its last parameters (with NaN scores every example gets class 0: chance).
    """
    X_train, y_train, X_test, y_test = digits_arrays(data)
    params = numpy_net.init_params(sizes, bn=bn, seed=seed)
    running, velocity = numpy_net.init_running(params), {}
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    # A diverging run overflows on purpose; its NaN is the result, not a warning.
    with np.errstate(all="ignore"):
        for _ in range(epochs):
            order = rng.permutation(len(X_train))          # a new shuffle every epoch
            params, velocity, epoch_losses = numpy_net.train_epoch(
                params, velocity, running, X_train, y_train, order, batch_size, lr, beta_avg)
            losses += epoch_losses
            if not np.isfinite(losses[-1]):
                break
        test = numpy_net.accuracy(params, running, X_test, y_test)
    return {"params": params, "running": running, "losses": np.array(losses),
            "test accuracy": test}


def to_torch(params: numpy_net.Params, running: dict | None = None,
             bn_impl: str = "torch") -> nn.Sequential:
    """The course's torch model (``make_mlp``, ReLU, batch norm before each activation) in
    float64, with the numpy network's parameters and running statistics.

    ``bn_impl="torch"`` uses ``torch.nn.BatchNorm1d``, ``"course_lib"`` the course's own.
    """
    L = numpy_net.n_layers(params)
    sizes = [params["W1"].shape[1]] + [params[f"W{l}"].shape[0] for l in range(1, L + 1)]
    bn = "gamma1" in params
    model = make_mlp(sizes[0], sizes[1:-1], sizes[-1], activation="relu",
                     bn="before" if bn else None, bn_impl=bn_impl).double()
    names = {"W": "weight", "b": "bias", "gamma": "weight", "beta": "bias",
             "mean": "running_mean", "var": "running_var"}
    state = model.state_dict()
    for key, value in [*params.items(), *(running or {}).items()]:
        kind, l = key.rstrip("0123456789"), int(key[len(key.rstrip("0123456789")):])
        module = "output" if l == L else (f"bn{l}" if kind in ("gamma", "beta", "mean", "var")
                                          else f"linear{l}")
        state[f"{module}.{names[kind]}"] = torch.from_numpy(np.array(value, np.float64))
    model.load_state_dict(state)
    return model


@dataclass(frozen=True)
class CapstoneSettings:
    """The numpy network of chapter 9 and its two learning rates (momentum, lecture's form)."""

    sizes: tuple[int, ...] = (64, 100, 100, 100, 10)
    small_lr: float = 0.5
    large_lr: float = 4.0
    epochs: int = 2
    batch_size: int = 64
    beta_avg: float = 0.9


@claims.claim(
    "numpy-net-bn-large-lr",
    chapter=9,
    statement="The numpy network trains to over 85% test accuracy in two epochs with and "
              "without batch norm at learning rate 0.5; at learning rate 4 only the network "
              "with batch norm does, and the plain one ends at chance (below 30%).",
    settings=CapstoneSettings(),
    section="train-it-on-the-digits",
)
def bn_trains_at_large_lr(settings: CapstoneSettings, seed: int) -> claims.Evidence:
    data = load_digits_split(seed=0)
    runs = {}
    for lr_name, lr in (("small", settings.small_lr), ("large", settings.large_lr)):
        for bn in (True, False):
            runs[(lr_name, bn)] = train_numpy_net(
                data, list(settings.sizes), bn=bn, lr=lr, epochs=settings.epochs,
                batch_size=settings.batch_size, beta_avg=settings.beta_avg, seed=seed)
    acc = {f"{'bn' if bn else 'plain'}, lr {lr_name}": r["test accuracy"]
           for (lr_name, bn), r in runs.items()}
    return claims.Evidence(
        numbers=acc,
        checks=[
            claims.above("BN, small learning rate", acc["bn, lr small"], 0.85),
            claims.above("plain, small learning rate", acc["plain, lr small"], 0.85),
            claims.above("BN, large learning rate", acc["bn, lr large"], 0.85),
            claims.below("plain, large learning rate", acc["plain, lr large"], 0.3),
        ],
        result=runs,
    )
