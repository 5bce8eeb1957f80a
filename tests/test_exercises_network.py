"""Tests for course_lib/exercises/network.py, the grader of chapter 3's "build_bn_net": correct
networks written in different ways pass, each classic mistake is named, and broken submissions
become feedback instead of exceptions."""

from __future__ import annotations

from collections import OrderedDict

import ipywidgets
import pytest
import torch
from torch import nn

from course_lib.exercises import EXERCISES, Feedback, check, grade
from course_lib.exercises import network as net_ex
from course_lib.nn import BatchNorm1d

EX = "build_bn_net"


# ---------------------------------------------------------------------------------------
# Correct solutions, each written differently
# ---------------------------------------------------------------------------------------


def build_loop(in_features, widths, out_features):
    layers, fan_in = [], in_features
    for w in widths:
        layers += [nn.Linear(fan_in, w, bias=False), BatchNorm1d(w), nn.Sigmoid()]
        fan_in = w
    layers.append(nn.Linear(fan_in, out_features))
    return nn.Sequential(*layers)


def build_named(in_features, widths, out_features):
    """Named layers, as course_lib.experiments.lab.models.make_mlp does."""
    layers = OrderedDict()
    sizes = [in_features, *widths]
    for l, (fan_in, w) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        layers[f"linear{l}"] = nn.Linear(fan_in, w, bias=False)
        layers[f"bn{l}"] = BatchNorm1d(w)
        layers[f"act{l}"] = nn.Sigmoid()
    layers["output"] = nn.Linear(sizes[-1], out_features)
    return nn.Sequential(layers)


def build_blocks(in_features, widths, out_features):
    """One nn.Sequential block per hidden layer, built with add_module."""
    model = nn.Sequential()
    fan_in = in_features
    for l, w in enumerate(widths):
        model.add_module(f"block{l}", nn.Sequential(nn.Linear(fan_in, w, bias=False),
                                                    BatchNorm1d(w), nn.Sigmoid()))
        fan_in = w
    model.add_module("head", nn.Linear(fan_in, out_features))
    return model


class SigmoidByHand(nn.Module):
    def forward(self, x):
        return 1.0 / (1.0 + torch.exp(-x))


def build_own_sigmoid(in_features, widths, out_features):
    sizes = (in_features, *widths)
    hidden = [m for a, b in zip(sizes, sizes[1:])
              for m in (nn.Linear(a, b, bias=False), BatchNorm1d(b), SigmoidByHand())]
    return nn.Sequential(*hidden, nn.Linear(sizes[-1], out_features))


def build_float64(in_features, widths, out_features):
    return build_loop(in_features, widths, out_features).double()


def build_torch_bn(in_features, widths, out_features):
    layers, fan_in = [], in_features
    for w in widths:
        layers += [nn.Linear(fan_in, w, bias=False), nn.BatchNorm1d(w), nn.Sigmoid()]
        fan_in = w
    return nn.Sequential(*layers, nn.Linear(fan_in, out_features))


def build_make_mlp(in_features, widths, out_features):
    from course_lib.experiments.lab.models import make_mlp

    return make_mlp(in_features, widths, out_features, bn="before")


CORRECT = [build_loop, build_named, build_blocks, build_own_sigmoid, build_float64,
           build_torch_bn, build_make_mlp]


@pytest.mark.parametrize("fn", CORRECT, ids=lambda f: f.__name__)
def test_correct_solutions_pass(fn):
    fb = grade(EX, fn)
    assert (fb.passed, fb.mistake) == (True, None), fb.message
    assert fb.message.startswith("✓ Correct: all 4 networks")
    assert "28,010 parameters" in fb.message and "300 more" in fb.message
    assert ("torch.nn.BatchNorm1d" in fb.message) == (fn is build_torch_bn)


def test_grading_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    grade(EX, build_loop)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_grading_is_deterministic():
    assert grade(EX, build_loop) == grade(EX, build_loop)
    assert grade(EX, build_after_activation) == grade(EX, build_after_activation)


# ---------------------------------------------------------------------------------------
# Classic mistakes: WRONG ON PURPOSE
# ---------------------------------------------------------------------------------------


def _builder(hidden, output=lambda fan_in, out: [nn.Linear(fan_in, out)]):
    """A network from ``hidden(fan_in, w, l) -> layers`` and ``output(fan_in, out) -> layers``."""

    def build(in_features, widths, out_features):
        layers, fan_in = [], in_features
        for l, w in enumerate(widths):
            layers += hidden(fan_in, w, l)
            fan_in = w
        return nn.Sequential(*layers, *output(fan_in, out_features))

    return build


build_after_activation = _builder(lambda a, w, l: [nn.Linear(a, w), nn.Sigmoid(), BatchNorm1d(w)])
MISTAKES = {
    "bn_after_activation": build_after_activation,
    "missing_bn": _builder(lambda a, w, l: [nn.Linear(a, w, bias=False), nn.Sigmoid()]),
    "bias_before_bn": _builder(lambda a, w, l: [nn.Linear(a, w), BatchNorm1d(w), nn.Sigmoid()]),
    # BatchNorm1d sized by the layer's input instead of its output
    "wrong_bn_size": _builder(lambda a, w, l: [nn.Linear(a, w, bias=False), BatchNorm1d(a), nn.Sigmoid()]),
    "bn_on_output": _builder(
        lambda a, w, l: [nn.Linear(a, w, bias=False), BatchNorm1d(w), nn.Sigmoid()],
        output=lambda a, out: [nn.Linear(a, out, bias=False), BatchNorm1d(out)],
    ),
    "wrong_activation": _builder(lambda a, w, l: [nn.Linear(a, w, bias=False), BatchNorm1d(w), nn.ReLU()]),
    "missing_activation": _builder(lambda a, w, l: [nn.Linear(a, w, bias=False), BatchNorm1d(w)]),
    "activation_on_output": _builder(
        lambda a, w, l: [nn.Linear(a, w, bias=False), BatchNorm1d(w), nn.Sigmoid()],
        output=lambda a, out: [nn.Linear(a, out), nn.Sigmoid()],
    ),
    "output_without_bias": _builder(
        lambda a, w, l: [nn.Linear(a, w, bias=False), BatchNorm1d(w), nn.Sigmoid()],
        output=lambda a, out: [nn.Linear(a, out, bias=False)],
    ),
    "bn_not_affine": _builder(
        lambda a, w, l: [nn.Linear(a, w, bias=False), BatchNorm1d(w, affine=False), nn.Sigmoid()]),
    "wrong_layer_count": _builder(  # forgot the output layer
        lambda a, w, l: [nn.Linear(a, w, bias=False), BatchNorm1d(w), nn.Sigmoid()], output=lambda a, out: []),
    "wrong_layers": _builder(  # dropout is not part of this network
        lambda a, w, l: [nn.Linear(a, w, bias=False), BatchNorm1d(w), nn.Sigmoid(), nn.Dropout(0.5)]),
}


def build_hard_coded_100(in_features, widths, out_features):
    """Works for the chapter's network, not for other widths."""
    layers, fan_in = [], in_features
    for _ in widths:
        layers += [nn.Linear(fan_in, 100, bias=False), BatchNorm1d(100), nn.Sigmoid()]
        fan_in = 100
    return nn.Sequential(*layers, nn.Linear(100, out_features))


def build_bn_on_inputs(in_features, widths, out_features):
    return nn.Sequential(BatchNorm1d(in_features), *build_loop(in_features, widths, out_features))


MISTAKES["wrong_widths"] = build_hard_coded_100


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_mistake_is_named(mistake):
    fb = grade(EX, MISTAKES[mistake])
    assert (fb.passed, fb.mistake) == (False, mistake), fb.message
    assert "Your network, from build(6, [5, 4], 3):" in fb.message
    assert "Expected:\n  Linear(6, 5, bias=False) -> BatchNorm1d(5) -> Sigmoid" in fb.message
    assert "Fix: " not in fb.message and fb.solution == net_ex.FIX


def test_every_layer_mistake_id_has_a_test():
    assert set(net_ex.MISTAKE_IDS) == set(MISTAKES)


@pytest.mark.parametrize(
    "mistake, words",
    [
        ("bn_after_activation", ["Hidden layers 1 and 2:", "Linear -> BN -> Sigmoid"]),
        ("bias_before_bn", ["gradient is exactly 0", "beta takes its place", "bias=False",
                            "83 parameters instead of 92 for build(6, [5, 4], 3)"]),
        ("wrong_bn_size", ["BatchNorm1d(6) after a Linear layer with 5 outputs", "BatchNorm1d(5)"]),
        ("wrong_activation", ["ReLU, not a sigmoid", "nn.Sigmoid()"]),
        ("bn_on_output", ["Output layer", "logits"]),
        ("wrong_layer_count", ["Expected 3 Linear layers", "found 2"]),
        ("wrong_layers", ["Dropout"]),
        ("wrong_widths", ["Hidden layer 1: Linear(6, 100, bias=False), expected Linear(6, 5, bias=False)",
                          "Hidden layer 2: Linear(100, 100, bias=False), expected Linear(5, 4, bias=False)"]),
    ],
)
def test_messages_say_what_and_why(mistake, words):
    fb = grade(EX, MISTAKES[mistake])
    for w in words:
        assert w in fb.message, (w, fb.message)


def test_bn_after_activation_with_bias_is_named_by_its_order():
    # Linear -> Sigmoid -> BN keeps its bias legitimately; the order is the mistake.
    fb = grade(EX, build_after_activation)
    assert fb.mistake == "bn_after_activation" and "redundant" not in fb.message


def test_several_mistakes_name_the_most_fundamental_and_list_the_rest():
    both = _builder(lambda a, w, l: [nn.Linear(a, w), BatchNorm1d(a), nn.Tanh()])
    fb = grade(EX, both)
    assert fb.mistake == "wrong_activation"
    assert "Also:" in fb.message and "BatchNorm1d(6)" in fb.message and "redundant" in fb.message


def test_bn_on_the_inputs_is_rejected():
    fb = grade(EX, build_bn_on_inputs)
    assert fb.mistake == "wrong_layers" and "starts with BatchNorm1d(6)" in fb.message


def test_wrong_eps_is_caught_by_the_forward_check():
    wrong_eps = _builder(lambda a, w, l: [nn.Linear(a, w, bias=False), BatchNorm1d(w, eps=0.1), nn.Sigmoid()])
    fb = grade(EX, wrong_eps)
    assert (fb.passed, fb.mistake) == (False, "wrong_values"), fb.message
    assert "eps = 0.1" in fb.message and "logits | exact: False" in fb.message
    assert fb.solution == net_ex.FIX, "runs, right layers, wrong values: the recipe is available"


def test_a_network_that_ignores_gamma_and_beta_is_caught():
    class FrozenBN(BatchNorm1d):
        def forward(self, x):
            return (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + self.eps)

    fb = grade(EX, _builder(lambda a, w, l: [nn.Linear(a, w, bias=False), FrozenBN(w), nn.Sigmoid()]))
    assert fb.mistake == "wrong_values", fb.message


def test_a_network_that_crashes_gets_the_error_not_a_solution():
    class CrashingBN(BatchNorm1d):
        def forward(self, x):
            raise RuntimeError("boom")

    fb = grade(EX, _builder(lambda a, w, l: [nn.Linear(a, w, bias=False), CrashingBN(w), nn.Sigmoid()]))
    assert (fb.passed, fb.mistake) == (False, "exception"), fb.message
    assert "boom" in fb.message and fb.solution == ""
    assert grade(EX, build_loop).solution == "", "a pass has nothing to reveal"


# ---------------------------------------------------------------------------------------
# Broken submissions become feedback
# ---------------------------------------------------------------------------------------


def _raises(in_features, widths, out_features):
    layers = [nn.Linear(in_features, widths[0], bias=False)]
    return nn.Sequential(*layers, undefined_layer)  # noqa: F821


def _not_implemented(in_features, widths, out_features):
    raise NotImplementedError("Replace this line with your code.")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = build_loop(64, [100, 100, 100], 10)

    def forward(self, x):
        return self.body(x)


BROKEN = {
    "exception": (_raises, "exception", ["NameError", "in _raises, line", "build(6, [5, 4], 3)"]),
    "not_implemented": (_not_implemented, "not_implemented", ["NotImplementedError"]),
    "returns_none": (lambda i, w, o: None, "returned_none", ["returned None", "return nn.Sequential"]),
    "returns_a_function": (lambda i, w, o: build_loop, "wrong_type", ["returned a function (build_loop)"]),
    "returns_the_class": (lambda i, w, o: nn.Sequential, "wrong_type", ["the class torch.nn"]),
    "returns_a_list": (lambda i, w, o: list(build_loop(i, w, o)), "wrong_type", ["list of 7 layers", "nn.Sequential(*layers)"]),
    "returns_a_module": (lambda i, w, o: Net(), "wrong_type", ["expected an nn.Sequential"]),
    "returns_a_number": (lambda i, w, o: 3, "wrong_type", ["returned a int"]),
    "returns_a_tensor": (lambda i, w, o: torch.zeros(3), "wrong_type", ["torch.Tensor"]),
    "empty_sequential": (lambda i, w, o: nn.Sequential(), "wrong_layers", ["an empty nn.Sequential"]),
    "wrong_signature": (lambda in_features, widths: None, "wrong_signature", ["3 positional arguments"]),
    "passes_the_network": (build_loop(6, [5], 3), "wrong_type", ["without calling it"]),
    "not_callable": ("build", "wrong_type", ["without calling it"]),
    "custom_container": (lambda i, w, o: nn.Sequential(Net()), "wrong_layers", ["Net with sub-modules"]),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_submissions_become_feedback(kind):
    fn, mistake, words = BROKEN[kind]
    fb = grade(EX, fn)
    assert isinstance(fb, Feedback)
    assert (fb.passed, fb.mistake) == (False, mistake), fb.message
    for w in words:
        assert w in fb.message, (w, fb.message)


def test_a_network_that_fails_on_a_batch_is_feedback():
    class Exploding(nn.Module):  # parameter-free, so it counts as the activation
        def forward(self, x):
            raise RuntimeError("boom")

    fb = grade(EX, _builder(lambda a, w, l: [nn.Linear(a, w, bias=False), BatchNorm1d(w), Exploding()]))
    assert (fb.passed, fb.mistake) == (False, "wrong_activation"), fb.message


def test_a_submission_that_consumes_widths_is_named_and_does_not_affect_later_calls():
    def consumes(in_features, widths, out_features):
        model = build_loop(in_features, widths, out_features)
        widths.clear()
        return model

    fb = grade(EX, consumes)
    assert fb.mistake == "mutates_input", fb.message
    assert "list(widths)" in fb.message
    assert grade(EX, build_loop).passed


def test_exercise_is_registered_with_its_signature():
    assert EXERCISES[EX].startswith("fn(in_features, widths, out_features) -> nn.Sequential")
    assert "(chapter 3)" in EXERCISES[EX]


def test_check_returns_a_widget():
    widget = check(EX, build_loop)
    assert isinstance(widget, ipywidgets.HTML) and "✓ Correct" in widget.value
    widget = check(EX, MISTAKES["missing_bn"])
    assert "Looks like: missing bn" in widget.value
