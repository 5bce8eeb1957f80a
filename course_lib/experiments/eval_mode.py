r"""Chapter 6's network experiments: what a trained network's running statistics are worth.

One digits MLP (64 -> 100 -> 100 -> 10, batch norm before each ReLU) is trained three times
from the same seed, changing only batch norm's momentum (:class:`RunsSettings`). The
running averages never enter a training step, so the three networks end with identical
weights and differ only in their running statistics. The chapter's claims about them are
registered here:

- ``running-stats-momentum-gap``: the gap between running and population statistics
  (:func:`course_lib.experiments.probes.population_gap.population_gap`) is several times
  larger with a momentum that is too low (0.001) or too high (0.99) than with the default 0.1;
- ``forgotten-eval-depends-on-the-batch``: in training mode predictions depend on the batch
  (:func:`course_lib.experiments.probes.inference.batch_dependence`);
- ``forgotten-eval-corrupts-running-stats``: a "just predicting" pass in training mode over
  other data overwrites the running statistics and ruins ordinary predictions;
  :func:`course_lib.calibration.recalibrate_bn` repairs them;
- ``calibration-vs-running-averages``: statistics measured after training (calibration) match
  the running averages at the default momentum and recover what a bad momentum cost.

:func:`momentum_runs` trains the three networks once per process and seed (several claims
probe them) and hands out copies.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from course_lib.calibration import recalibrate_bn
from course_lib.experiments import claims
from course_lib.experiments.lab.data import Split, load_digits_split
from course_lib.experiments.lab.models import make_mlp
from course_lib.experiments.lab.training import History, evaluate, train
from course_lib.experiments.probes.inference import batch_dependence, predict_in_batches
from course_lib.experiments.probes.population_gap import gap_recorder, population_gap
from course_lib.normalize import Standardizer

__all__ = [
    "CalibrationSettings",
    "ForgottenEvalSettings",
    "MomentumRun",
    "RunsSettings",
    "calibration_vs_running_averages",
    "default_network",
    "forgotten_eval_batches",
    "forgotten_eval_statistics",
    "inverted_scans",
    "momentum_gap",
    "momentum_runs",
]


@dataclass(frozen=True)
class RunsSettings:
    """The three training runs of chapter 6.

    Attributes:
        momenta: ``(label, momentum)`` pairs, PyTorch's momentum (weight of the new batch).
        widths: the hidden layers.
        steps, lr, batch_size, eval_every: passed to
            :func:`course_lib.experiments.lab.training.train` (plain SGD).
        layer, unit: the batch norm unit whose running and population mean are recorded.
        final_evals: the gap at the end is the mean over this many last evaluations (one
            alone is a noisy sample for momentum 0.99).
    """

    momenta: tuple[tuple[str, float], ...] = (
        ("0.1 (default)", 0.1), ("0.001 (too low)", 0.001), ("0.99 (too high)", 0.99))
    widths: tuple[int, ...] = (100, 100)
    steps: int = 600
    lr: float = 0.2
    batch_size: int = 60
    eval_every: int = 30
    layer: str = "bn2"
    unit: int = 0
    final_evals: int = 5


#: Chapter 6's runs.
RUNS = RunsSettings()


@dataclass(frozen=True)
class MomentumRun:
    """One of the three runs.

    Attributes:
        label: the momentum's label.
        momentum: PyTorch's momentum of every batch norm layer.
        model: the trained network (a copy, in eval mode).
        history: the run's history; ``history.records`` holds ``"gap"``, ``"running_mean"``
            and ``"population_mean"`` at every evaluation.
        final_gap: the mean gap over the last ``final_evals`` evaluations.
    """

    label: str
    momentum: float
    model: nn.Sequential = field(repr=False)
    history: History = field(repr=False)
    final_gap: float


# 32: the ten claim seeds' three runs each, so every claim of a seed reuses them.
@functools.lru_cache(maxsize=32)
def _run(seed: int, settings: RunsSettings, label: str) -> MomentumRun:
    # Several claims probe the same networks: each is trained once per process and seed.
    momentum = dict(settings.momenta)[label]
    data = load_digits_split(seed=seed)
    net = make_mlp(data.n_features, list(settings.widths), data.n_classes, activation="relu",
                   bn="before", bn_impl=functools.partial(nn.BatchNorm1d, momentum=momentum),
                   seed=seed)
    history = train(net, data, steps=settings.steps, lr=settings.lr,
                    batch_size=settings.batch_size, seed=seed, eval_every=settings.eval_every,
                    progress=False,
                    record=gap_recorder(data.X_train, layer=settings.layer, unit=settings.unit))
    final = float(np.mean(history.records["gap"][-settings.final_evals:]))
    return MomentumRun(label, momentum, net.eval(), history, final)


def momentum_runs(seed: int, settings: RunsSettings = RUNS) -> tuple[Split, dict[str, MomentumRun]]:
    """The digits split of ``seed`` and the trained runs, by label (fresh copies)."""
    runs = {label: copy.deepcopy(_run(seed, settings, label)) for label, _ in settings.momenta}
    return load_digits_split(seed=seed), runs


def default_network(seed: int, settings: RunsSettings = RUNS) -> tuple[Split, nn.Sequential]:
    """The digits split and the network trained with the first (default) momentum, in eval
    mode (a copy)."""
    label = settings.momenta[0][0]
    return load_digits_split(seed=seed), copy.deepcopy(_run(seed, settings, label).model)


@claims.claim(
    "running-stats-momentum-gap",
    chapter=6,
    statement="Three trainings that differ only in batch norm's momentum end with identical "
              "weights; at the end the running means are more than 5 times farther from the "
              "population's with momentum 0.001, and more than 3 times with 0.99, than with "
              "the default 0.1.",
    settings=RUNS,
    section="ch6-running-stats",
)
def momentum_gap(settings: RunsSettings, seed: int) -> claims.Evidence:
    _, runs = momentum_runs(seed, settings)
    default, low, high = runs.values()
    weights = [{k: v.detach() for k, v in r.model.named_parameters()} for r in runs.values()]
    # Not a tolerance: the running statistics never enter a training step, so the weights
    # must be equal bit for bit.
    weight_diff = max(float((w[k] - weights[0][k]).abs().max()) for w in weights for k in w)
    numbers = {f"gap {r.label}": r.final_gap for r in runs.values()}
    numbers.update({
        f"gap {low.label} / gap {default.label}": low.final_gap / default.final_gap,
        f"gap {high.label} / gap {default.label}": high.final_gap / default.final_gap,
        "largest weight difference between the runs": weight_diff,
    })
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.below("largest weight difference between the runs", weight_diff, 1e-30),
            claims.above(f"gap {low.label} / gap {default.label}",
                         low.final_gap / default.final_gap, 5),
            claims.above(f"gap {high.label} / gap {default.label}",
                         high.final_gap / default.final_gap, 3),
        ],
        result=runs,
    )


@dataclass(frozen=True)
class ForgottenEvalSettings:
    """Predicting with the default network in training mode.

    Attributes:
        runs: how the network is trained.
        batch_sizes: the test-time batch sizes compared (450 is the whole test set).
        n_shuffles: random batchings per batch size in training mode.
        sorted_batch: the batch size of the test set sorted by label.
        probe_batch: the batch size of the "just predicting" pass over inverted scans.
    """

    runs: RunsSettings = RUNS
    batch_sizes: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128, 450)
    n_shuffles: int = 10
    sorted_batch: int = 50
    probe_batch: int = 50


@dataclass(frozen=True)
class BatchDependence:
    """What :func:`forgotten_eval_batches` measured.

    Attributes:
        in_train: :func:`batch_dependence` of the network in training mode.
        in_eval: the same in eval mode, with batch size 1 first.
        acc_eval: the eval-mode accuracy on the whole test set at once.
        acc_sorted: training mode, test set sorted by label, consecutive batches.
    """

    in_train: dict = field(repr=False)
    in_eval: dict = field(repr=False)
    acc_eval: float
    acc_sorted: float


@claims.claim(
    "forgotten-eval-depends-on-the-batch",
    chapter=6,
    statement="Predicted in training mode, the test accuracy falls by more than 0.3 with "
              "batches of 2, more than half the predictions change with the batch at 4 and "
              "some still change at 32, one batch of the whole test set is within 0.02 of eval "
              "mode, and batches sorted by label lose most of the accuracy (below 0.6); in "
              "eval mode no prediction depends on the batch.",
    settings=ForgottenEvalSettings(),
    section="ch6-forgotten-eval",
)
def forgotten_eval_batches(settings: ForgottenEvalSettings, seed: int) -> claims.Evidence:
    s = settings
    data, model = default_network(seed, s.runs)
    sizes = list(s.batch_sizes)
    acc_eval = evaluate(model.eval(), data.X_test, data.y_test)
    in_train = batch_dependence(model.train(), data.X_test, data.y_test, sizes,
                                n_shuffles=s.n_shuffles, seed=seed)
    in_eval = batch_dependence(model.eval(), data.X_test, data.y_test, [1] + sizes,
                               n_shuffles=3, seed=seed)
    by_label = torch.argsort(data.y_test, stable=True)
    preds = predict_in_batches(model.train(), data.X_test[by_label], s.sorted_batch,
                               shuffle=False)[0]
    model.eval()
    acc_sorted = float((preds == data.y_test[by_label]).double().mean())
    k = {m: i for i, m in enumerate(sizes)}
    eval_off = float(np.abs(in_eval["accuracy"] - acc_eval).max() + in_eval["changed"].max())
    numbers = {
        "eval-mode accuracy": acc_eval,
        "train mode, batches of 2: accuracy drop": acc_eval - in_train["accuracy"][k[2]],
        "train mode, batches of 4: share changed": in_train["changed"][k[4]],
        "train mode, batches of 32: share changed": in_train["changed"][k[32]],
        "train mode, one batch of 450: |accuracy - eval|": abs(in_train["accuracy"][k[450]]
                                                                 - acc_eval),
        "train mode, sorted by label: accuracy": acc_sorted,
        "eval mode: largest change with the batch": eval_off,
    }
    return claims.Evidence(
        numbers={n: float(v) for n, v in numbers.items()},
        checks=[
            claims.above("train mode, batches of 2: accuracy drop",
                         numbers["train mode, batches of 2: accuracy drop"], 0.3),
            claims.above("train mode, batches of 4: share changed",
                         numbers["train mode, batches of 4: share changed"], 0.5),
            claims.above("train mode, batches of 32: share changed",
                         numbers["train mode, batches of 32: share changed"], 0.02),
            claims.below("train mode, one batch of 450: |accuracy - eval|",
                         numbers["train mode, one batch of 450: |accuracy - eval|"], 0.02),
            claims.below("train mode, sorted by label: accuracy", acc_sorted, 0.6),
            claims.below("eval mode: largest change with the batch", eval_off, 1e-6),
        ],
        result=BatchDependence(in_train, in_eval, acc_eval, acc_sorted),
    )


def inverted_scans(seed: int) -> torch.Tensor:
    """The test digits of split ``seed`` as another scanner would store them, dark on light
    (pixel value ``16 - x``), standardized with the training statistics as usual."""
    raw = load_digits_split(seed=seed, standardize=False)
    scaler = Standardizer().fit(raw.X_train.double().numpy())
    return torch.tensor(scaler.transform(16.0 - raw.X_test.double().numpy()),
                        dtype=torch.float32)


@dataclass(frozen=True)
class Slip:
    """What :func:`forgotten_eval_statistics` measured.

    Attributes:
        model: the trained network (eval mode).
        slipped: a copy after a pass over inverted scans in training mode.
        careful: a copy after the same pass in eval mode.
        repaired: ``slipped`` recalibrated on the training set.
        acc_eval, acc_slipped, acc_careful, acc_repaired: their test accuracies.
    """

    model: nn.Sequential = field(repr=False)
    slipped: nn.Sequential = field(repr=False)
    careful: nn.Sequential = field(repr=False)
    repaired: nn.Sequential = field(repr=False)
    acc_eval: float
    acc_slipped: float
    acc_careful: float
    acc_repaired: float


@claims.claim(
    "forgotten-eval-corrupts-running-stats",
    chapter=6,
    statement="Predicting a folder of inverted scans in training mode, without any gradient "
              "step, moves the running statistics far from the training population and drops "
              "the accuracy on ordinary test digits below 0.5; recalibrating on the training "
              "set brings it back to within 0.01 of the trained network's.",
    settings=ForgottenEvalSettings(),
    section="ch6-forgotten-eval",
)
def forgotten_eval_statistics(settings: ForgottenEvalSettings, seed: int) -> claims.Evidence:
    data, model = default_network(seed, settings.runs)
    X_inverted = inverted_scans(seed)
    slipped = copy.deepcopy(model).train()  # the slip: model.eval() never called
    careful = copy.deepcopy(model).eval()
    with torch.no_grad():
        for chunk in torch.split(X_inverted, settings.probe_batch):
            slipped(chunk)
            careful(chunk)
    acc = {name: evaluate(net, data.X_test, data.y_test)
           for name, net in (("eval", model), ("slipped", slipped), ("careful", careful))}
    gap_before = population_gap(model, data.X_train)
    gap_after = population_gap(slipped, data.X_train)
    repaired = recalibrate_bn(copy.deepcopy(slipped), data.X_train)
    acc["repaired"] = evaluate(repaired, data.X_test, data.y_test)
    numbers = {
        "accuracy, trained": acc["eval"],
        "accuracy after the probe in training mode": acc["slipped"],
        "accuracy after recalibration": acc["repaired"],
        "gap after the slip / gap before": gap_after / gap_before,
        "recalibrated minus trained accuracy": acc["repaired"] - acc["eval"],
    }
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.below("accuracy after the probe in training mode", acc["slipped"], 0.5),
            claims.above("gap after the slip / gap before", gap_after / gap_before, 10),
            claims.above("recalibrated minus trained accuracy",
                         numbers["recalibrated minus trained accuracy"], -0.01),
        ],
        result=Slip(model, slipped, careful, repaired, acc["eval"], acc["slipped"],
                    acc["careful"], acc["repaired"]),
    )


@dataclass(frozen=True)
class CalibrationSettings:
    """Running averages against statistics measured after training.

    Attributes:
        runs: the three trainings.
    """

    runs: RunsSettings = RUNS


@dataclass(frozen=True)
class Calibrated:
    """One run before and after :func:`course_lib.calibration.recalibrate_bn`.

    Attributes:
        label: the momentum's label.
        gap_before, gap_after: :func:`population_gap` on the training set.
        acc_ema, acc_calibrated: the test accuracy with the running averages and with the
            calibrated statistics.
    """

    label: str
    gap_before: float
    gap_after: float
    acc_ema: float
    acc_calibrated: float


@claims.claim(
    "calibration-vs-running-averages",
    chapter=6,
    statement="Statistics recomputed on the training set after training (calibration) are the "
              "population's; at the default momentum they move the test accuracy by less than "
              "a point, and no run loses more than a point to them; with a badly chosen "
              "momentum they recover accuracy on average: more than half a point with the "
              "lagging 0.001, more than a tenth of a point with the noisy 0.99.",
    settings=CalibrationSettings(),
    section="ch6-calibration",
)
def calibration_vs_running_averages(settings: CalibrationSettings, seed: int) -> claims.Evidence:
    data, runs = momentum_runs(seed, settings.runs)
    rows = []
    for run in runs.values():
        calibrated = recalibrate_bn(copy.deepcopy(run.model), data.X_train)
        rows.append(Calibrated(
            run.label,
            population_gap(run.model, data.X_train),
            population_gap(calibrated, data.X_train),
            evaluate(run.model, data.X_test, data.y_test),
            evaluate(calibrated, data.X_test, data.y_test),
        ))
    numbers = {f"gain {r.label}": r.acc_calibrated - r.acc_ema for r in rows}
    numbers["largest gap after calibration"] = max(r.gap_after for r in rows)
    default = rows[0]
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.below("largest gap after calibration", numbers["largest gap after calibration"],
                         1e-4),
            claims.below(f"|gain| {default.label}",
                         abs(default.acc_calibrated - default.acc_ema), 0.01),
        ] + [claims.above(f"gain {r.label}", r.acc_calibrated - r.acc_ema, -0.01) for r in rows],
        result=rows,
    )


@calibration_vs_running_averages.aggregate
def _(seeds: list) -> list[claims.Check]:
    low, high = (label for label, _ in RUNS.momenta[1:])
    return [
        claims.above(f"mean gain {low}", claims.mean(n[f"gain {low}"] for n in seeds), 0.005),
        claims.above(f"mean gain {high}", claims.mean(n[f"gain {high}"] for n in seeds), 0.001),
    ]
