r"""Chapter 3 exercise: build the lecture's network with batch norm in it.

- ``build_bn_net``: ``fn(in_features, widths, out_features) -> nn.Sequential``. Per hidden
  layer ``l`` (widths ``widths[l-1]``), in the lecture's order:

  .. math:: z^{[l]} = W^{[l]} a^{[l-1]} \;\to\; \tilde z^{[l]} = \mathrm{BN}_{\gamma^{[l]},
            \beta^{[l]}}(z^{[l]}) \;\to\; a^{[l]} = \sigma(\tilde z^{[l]})

  i.e. ``Linear(fan_in, width, bias=False) -> BatchNorm1d(width) -> Sigmoid``, then a plain
  ``Linear(widths[-1], out_features)`` (with bias) producing the logits.

The reference is :func:`course_lib.experiments.models.make_mlp` with ``bn="before"`` (one implementation
of the network), whose tests check it layer by layer.

How the grader works (it never runs the learner's code outside a guard):

1. Call the submission on a few ``(in_features, widths, out_features)`` with distinct widths,
   so a batch norm sized by the wrong layer, or hard-coded widths, cannot hide.
2. Read the returned ``nn.Sequential`` as a list of layers (nested ``Sequential`` blocks are
   flattened, so one block per hidden layer is fine) and compare it, layer by layer, with
   the lecture's order. Each classic mistake has an id: ``bn_after_activation``,
   ``missing_bn``, ``bias_before_bn``, ``wrong_bn_size``, ``bn_on_output``,
   ``wrong_activation``, and a few more (see :data:`MISTAKE_IDS`).
3. If the layers are right, copy the reference's weights (with random ``gamma``, ``beta``
   and output bias) into the submission and compare the outputs on a fixed mini-batch in
   training mode, which also checks ``eps`` and that ``gamma`` and ``beta`` are learned.

``torch.nn.BatchNorm1d`` is accepted in place of ``course_lib.nn.BatchNorm1d`` (chapter 2
shows that they compute the same thing), with a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._compare import cmp_line, fmt_diff, is_close, type_name
from ._core import Feedback, _check_signature, register

__all__ = ["MISTAKE_IDS", "grade_build_bn_net"]

ARG_NAMES = ("in_features", "widths", "out_features")

#: The calls the grader makes. Distinct widths, so every size mistake shows; the last one
#: is the chapter's network, used in the messages.
CALLS: tuple[tuple[int, tuple[int, ...], int], ...] = (
    (6, (5, 4), 3),
    (4, (7,), 2),
    (3, (6, 2, 5), 4),
    (64, (100, 100, 100), 10),
)

#: Recognized problems with the layers, most fundamental first: the feedback names the first
#: one found and lists the others.
MISTAKE_IDS: tuple[str, ...] = (
    "wrong_layers",
    "wrong_layer_count",
    "bn_after_activation",
    "missing_bn",
    "bn_on_output",
    "wrong_activation",
    "missing_activation",
    "activation_on_output",
    "wrong_widths",
    "wrong_bn_size",
    "bias_before_bn",
    "bn_not_affine",
    "output_without_bias",
)

_BATCH = 8  # examples in the fixed mini-batch of the numerical check

FIX = (
    "For each hidden width w: nn.Linear(fan_in, w, bias=False), BatchNorm1d(w), nn.Sigmoid(); "
    "then fan_in = w. After the loop: nn.Linear(fan_in, out_features). Return "
    "nn.Sequential(*layers)."
)


@dataclass(frozen=True)
class _Layer:
    name: str  # qualified name in the Sequential, e.g. "3" or "block1.0"
    kind: str  # "linear", "bn", "sigmoid", "activation" or "other"
    module: Any


# ---------------------------------------------------------------- reading the layers


def _flatten(seq: Any, prefix: str = "") -> list[tuple[str, Any]]:
    from torch import nn

    out = []
    for name, child in seq.named_children():
        qualified = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            out.extend(_flatten(child, qualified + "."))
        else:
            out.append((qualified, child))
    return out


def _is_bn(module: Any) -> bool:
    from torch import nn

    from ..nn import _BatchNorm

    return isinstance(module, (nn.modules.batchnorm._BatchNorm, _BatchNorm))


def _is_sigmoid(module: Any) -> bool:
    """Whether a parameter-free module computes the sigmoid (checked on a few values)."""
    import torch

    z = torch.linspace(-6.0, 6.0, 13).reshape(1, 13)
    try:
        with torch.no_grad():
            out = module(z.clone())
        return bool(
            isinstance(out, torch.Tensor)
            and out.shape == z.shape
            and torch.allclose(out.double(), torch.sigmoid(z.double()), atol=1e-6)
        )
    except Exception:
        return False


def _classify(name: str, module: Any) -> _Layer:
    from torch import nn

    if isinstance(module, nn.Linear):
        return _Layer(name, "linear", module)
    if _is_bn(module):
        return _Layer(name, "bn", module)
    has_params = next(module.parameters(), None) is not None
    has_children = next(module.children(), None) is not None
    if isinstance(module, (nn.Dropout, nn.Identity, nn.Flatten)) or has_params or has_children:
        return _Layer(name, "other", module)
    return _Layer(name, "sigmoid" if _is_sigmoid(module) else "activation", module)


def _describe(layer: _Layer) -> str:
    m = layer.module
    if layer.kind == "linear":
        bias = "" if m.bias is not None else ", bias=False"
        return f"Linear({m.in_features}, {m.out_features}{bias})"
    if layer.kind == "bn":
        extra = "" if getattr(m, "affine", True) else ", affine=False"
        return f"{type(m).__name__}({m.num_features}{extra})"
    return type(m).__name__


def _chain(layers: list[_Layer]) -> str:
    return " -> ".join(_describe(l) for l in layers)


def _expected_chain(in_features: int, widths: tuple[int, ...], out_features: int) -> str:
    parts, fan_in = [], in_features
    for w in widths:
        parts += [f"Linear({fan_in}, {w}, bias=False)", f"BatchNorm1d({w})", "Sigmoid"]
        fan_in = w
    parts.append(f"Linear({fan_in}, {out_features})")
    return " -> ".join(parts)


def _call_text(call: tuple[int, tuple[int, ...], int]) -> str:
    in_features, widths, out_features = call
    return f"build({in_features}, {list(widths)}, {out_features})"


# ------------------------------------------------------------------- the layer checks


def _explain(mistake: str, **info: Any) -> str:
    texts = {
        "wrong_layers": "{text}",
        "wrong_layer_count": (
            "Expected {n_expected} Linear layers (one per hidden width, plus the output layer) "
            "but found {n_found}. Loop over widths to build one Linear -> BN -> Sigmoid per "
            "hidden layer, and finish with one Linear to out_features."
        ),
        "bn_after_activation": (
            "batch norm comes after the activation (Linear -> Sigmoid -> BN). The "
            "lecture normalizes z[l] = W[l] a[l-1], before the activation: Linear -> BN -> "
            "Sigmoid. (Some practitioners do use BN after the activation; chapter 3 runs "
            "both, but this exercise asks for the lecture's order.)"
        ),
        "missing_bn": (
            "there is no batch norm between the Linear layer and the activation. "
            "Every hidden layer needs BatchNorm1d(width) right after its Linear layer."
        ),
        "bn_on_output": (
            "batch norm after the output layer. The output layer produces the "
            "logits for the cross-entropy loss; normalizing them per mini-batch would tie "
            "each prediction to the other examples in the batch. Only hidden layers get BN; "
            "the output is a plain Linear (with its bias)."
        ),
        "wrong_activation": (
            "the activation is {found}, not a sigmoid. The lecture's network (and "
            "Ioffe & Szegedy's MNIST experiment) uses sigmoid units: nn.Sigmoid()."
        ),
        "missing_activation": (
            "no activation after the batch norm. Without a nonlinearity two Linear "
            "layers in a row collapse into one linear map. Add nn.Sigmoid() after each BN."
        ),
        "activation_on_output": (
            "an activation after the output layer. The network returns logits; "
            "the cross-entropy loss applies the softmax itself. End with the plain Linear."
        ),
        "wrong_widths": (
            "Layer l maps the previous width to widths[l-1]: keep a running fan_in "
            "(in_features first, then each width) and do not hard-code sizes."
        ),
        "wrong_bn_size": (
            "Batch norm has one gamma and one beta per unit it normalizes, so its size is "
            "the width of the Linear layer it follows."
        ),
        "bias_before_bn": (
            "the Linear layer before batch norm has a bias. It is redundant: BN "
            "subtracts the mini-batch mean, so any constant b[l] cancels, its gradient is "
            "exactly 0 and it never learns anything; BN's beta takes its place. Use "
            "nn.Linear(fan_in, width, bias=False) ({n_params} parameters instead of "
            "{n_with_bias} for {call})."
        ),
        "bn_not_affine": (
            "batch norm with affine=False has no gamma and beta. The network then "
            "cannot scale and shift the normalized z, and with the bias dropped nothing "
            "takes b[l]'s place. Keep the default affine=True."
        ),
        "output_without_bias": (
            "the output layer has no bias. Only a Linear layer followed by batch "
            "norm loses its bias (BN's beta replaces it); the output layer is followed by "
            "the loss, so it keeps its bias: nn.Linear(fan_in, out_features)."
        ),
    }
    text = texts[mistake].format(**info)
    return text[:1].upper() + text[1:]


def _layer_problems(
    layers: list[_Layer], call: tuple[int, tuple[int, ...], int]
) -> list[tuple[str, str]]:
    """All problems with the layers, as ``(mistake_id, explanation)`` in order of priority."""
    in_features, widths, out_features = call
    problems: list[tuple[str, str, str]] = []

    def add(mistake: str, where: str = "", detail: str = "", **info: Any) -> None:
        # detail: what is wrong at this place; the explanation is shared by all places.
        problems.append((mistake, where, detail, _explain(mistake, **info)))

    for layer in layers:
        if layer.kind == "other":
            if next(layer.module.children(), None) is not None:
                detail = (
                    f"Layer {layer.name} is a {type(layer.module).__name__} with sub-modules; "
                    f"build the network as one nn.Sequential of layers (nested nn.Sequential "
                    f"blocks are fine) so the order of the layers is visible."
                )
            else:
                detail = (
                    f"Layer {layer.name} is a {type(layer.module).__name__}, which this "
                    f"network does not have: only Linear, BatchNorm1d and Sigmoid layers."
                )
            add("wrong_layers", text=detail)
    if problems:
        return _sorted(problems)
    if not layers or layers[0].kind != "linear":
        first = _describe(layers[0]) if layers else "nothing (an empty nn.Sequential)"
        add("wrong_layers", text=(
            f"The network starts with {first}. It must start with the first hidden layer's "
            f"Linear layer (the inputs are already standardized; batch norm normalizes z[l], "
            f"what a Linear layer computes)."))
        return _sorted(problems)

    # One segment per Linear layer: the Linear and what follows it up to the next Linear.
    segments: list[list[_Layer]] = []
    for layer in layers:
        if layer.kind == "linear":
            segments.append([layer])
        else:
            segments[-1].append(layer)
    if len(segments) != len(widths) + 1:
        add("wrong_layer_count", n_expected=len(widths) + 1, n_found=len(segments))
        return _sorted(problems)

    fan_ins = (in_features, *widths)
    fan_outs = (*widths, out_features)
    n_params = _n_params(call, bias=False)
    n_with_bias = _n_params(call, bias=True)
    for l, segment in enumerate(segments, start=1):
        linear, rest = segment[0].module, segment[1:]
        kinds = [x.kind for x in rest]
        output = l == len(segments)
        where = "Output layer" if output else f"Hidden layer {l}"
        if (linear.in_features, linear.out_features) != (fan_ins[l - 1], fan_outs[l - 1]):
            expected = f"Linear({fan_ins[l - 1]}, {fan_outs[l - 1]}{'' if output else ', bias=False'})"
            add("wrong_widths", where, detail=f"{_describe(segment[0])}, expected {expected}")
        if output:
            if "bn" in kinds:
                add("bn_on_output", where)
            if "sigmoid" in kinds or "activation" in kinds:
                add("activation_on_output", where)
            if linear.bias is None:
                add("output_without_bias", where)
            continue
        activations = [x for x in rest if x.kind in ("sigmoid", "activation")]
        bns = [x for x in rest if x.kind == "bn"]
        if kinds in (["bn", "sigmoid"], ["bn", "activation"]):
            pass
        elif kinds in (["sigmoid", "bn"], ["activation", "bn"]):
            add("bn_after_activation", where)
        elif kinds in (["sigmoid"], ["activation"]):
            add("missing_bn", where)
        elif kinds in (["bn"], []):
            add("missing_activation", where)
            if not kinds:
                add("missing_bn", where)
        else:
            add("wrong_layers", text=(
                f"{where} is {_chain(segment)}; expected one Linear, one BatchNorm1d and one "
                f"Sigmoid, in that order."))
        for act in activations:
            if act.kind == "activation":
                add("wrong_activation", where, found=type(act.module).__name__)
        for bn in bns:
            if bn.module.num_features != linear.out_features:
                add("wrong_bn_size", where, detail=(
                    f"{_describe(bn)} after a Linear layer with {linear.out_features} outputs "
                    f"(use BatchNorm1d({linear.out_features}))"))
            if getattr(bn.module, "weight", None) is None or getattr(bn.module, "bias", None) is None:
                add("bn_not_affine", where)
        # A bias is redundant only when BN directly follows the Linear layer.
        if kinds[:1] == ["bn"] and linear.bias is not None:
            add("bias_before_bn", where, n_params=f"{n_params:,}", n_with_bias=f"{n_with_bias:,}",
                call=_call_text(call))
    return _sorted(problems)


def _sorted(problems: list[tuple[str, str, str, str]]) -> list[tuple[str, str]]:
    """``(mistake_id, where, detail, text)`` -> ``(mistake_id, message)`` by priority, with
    the same mistake in several layers said once: "Hidden layers 1, 2 and 3: ..."."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for mistake, where, detail, text in problems:
        groups.setdefault((mistake, text), [])
        if where:
            groups[mistake, text].append((where, detail))
    out = []
    for (mistake, text), places in groups.items():
        if not places:
            out.append((mistake, text))
        elif any(detail for _, detail in places):
            details = "; ".join(f"{w}: {d}" for w, d in places)
            out.append((mistake, f"{details}. {text}"))
        else:
            out.append((mistake, f"{_join_places([w for w, _ in places])}: {text}"))
    # Stable: within one id, the layers stay in order.
    return sorted(out, key=lambda p: MISTAKE_IDS.index(p[0]))


def _join_places(wheres: list[str]) -> str:
    hidden = [w.removeprefix("Hidden layer ") for w in wheres if w.startswith("Hidden layer ")]
    others = [w for w in wheres if not w.startswith("Hidden layer ")]
    parts = []
    if hidden:
        numbers = hidden[0] if len(hidden) == 1 else ", ".join(hidden[:-1]) + " and " + hidden[-1]
        parts.append(("Hidden layer " if len(hidden) == 1 else "Hidden layers ") + numbers)
    parts += others
    return "; ".join(parts)


def _n_params(call: tuple[int, tuple[int, ...], int], bias: bool) -> int:
    in_features, widths, out_features = call
    total, fan_in = 0, in_features
    for w in widths:
        total += fan_in * w + (w if bias else 0) + 2 * w  # W (and b), gamma, beta
        fan_in = w
    return total + fan_in * out_features + out_features


# ------------------------------------------------------------------ the returned value


def _check_returned(value: Any, call_text: str) -> tuple[str, str] | None:
    from torch import nn

    if value is None:
        return (
            "returned_none",
            f"{call_text} returned None. Did you forget `return nn.Sequential(*layers)` at "
            f"the end?",
        )
    if isinstance(value, type):
        return (
            "wrong_type",
            f"{call_text} returned the class {value.__module__}.{value.__qualname__}, not a "
            f"network. Create one: nn.Sequential(layer1, layer2, ...).",
        )
    if isinstance(value, (list, tuple)) and all(isinstance(v, nn.Module) for v in value):
        return (
            "wrong_type",
            f"{call_text} returned a {type(value).__name__} of {len(value)} layers. Wrap "
            f"them in a network: return nn.Sequential(*layers).",
        )
    if isinstance(value, nn.Module) and not isinstance(value, nn.Sequential):
        return (
            "wrong_type",
            f"{call_text} returned a {type_name(value)}, expected an nn.Sequential, so the "
            f"order of the layers is the order they run in: nn.Sequential(*layers).",
        )
    if not isinstance(value, nn.Module) and callable(value):
        name = getattr(value, "__name__", type(value).__name__)
        return (
            "wrong_type",
            f"{call_text} returned a function ({name}), not a network. Build the layers "
            f"inside your function and return the model itself: nn.Sequential(*layers).",
        )
    if not isinstance(value, nn.Module):
        return (
            "wrong_type",
            f"{call_text} returned a {type_name(value)}, expected an nn.Sequential of "
            f"layers.",
        )
    return None


# --------------------------------------------------------------- the numerical check


def _reference(call: tuple[int, tuple[int, ...], int], seed: int):
    """The reference network with random gamma, beta and output bias (not just 1, 0, 0)."""
    import torch

    from ..experiments.models import make_mlp

    in_features, widths, out_features = call
    ref = make_mlp(in_features, list(widths), out_features, bn="before", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in ref.modules():
            if _is_bn(module):
                module.weight.copy_(0.5 + 1.5 * torch.rand(module.num_features, generator=gen))
                module.bias.copy_(2.0 * torch.rand(module.num_features, generator=gen) - 1.0)
        ref.output.bias.copy_(torch.randn(out_features, generator=gen))
    return ref


def _copy_weights(ref: Any, layers: list[_Layer]) -> None:
    import torch

    ref_layers = [_classify(n, m) for n, m in _flatten(ref)]
    ref_linear = [l.module for l in ref_layers if l.kind == "linear"]
    ref_bn = [l.module for l in ref_layers if l.kind == "bn"]
    mine_linear = [l.module for l in layers if l.kind == "linear"]
    mine_bn = [l.module for l in layers if l.kind == "bn"]
    with torch.no_grad():
        for src, dst in zip(ref_linear, mine_linear):
            dst.weight.copy_(src.weight)
            if dst.bias is not None:
                dst.bias.copy_(src.bias if src.bias is not None else torch.zeros_like(dst.bias))
        for src, dst in zip(ref_bn, mine_bn):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)


def _forward_problem(
    model: Any, layers: list[_Layer], call: tuple[int, tuple[int, ...], int], seed: int
) -> tuple[tuple[str, str] | None, float]:
    """Copy the reference's weights in and compare outputs on a fixed batch (training mode)."""
    import torch

    ref = _reference(call, seed)
    _copy_weights(ref, layers)
    gen = torch.Generator().manual_seed(100 + seed)
    X = 1.0 + 2.0 * torch.randn(_BATCH, call[0], generator=gen)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    ref.train()
    model.train()
    with torch.no_grad():
        expected = ref(X).double().numpy()
        try:
            got = model(X.to(dtype))
        except Exception as exc:
            return (
                "exception",
                f"Your network raised {type(exc).__name__} on a mini-batch of shape "
                f"{tuple(X.shape)}: {exc}",
            ), 0.0
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != expected.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type_name(got)
        return (
            "wrong_shape",
            f"On a mini-batch of shape {tuple(X.shape)} your network returned {shape}, "
            f"expected logits of shape {expected.shape}.",
        ), 0.0
    got_np = got.detach().double().numpy()
    # float32 tolerances: the network runs in float32 however the learner wrote it.
    if is_close(got_np.astype(np.float32), expected):
        return None, float(np.max(np.abs(got_np - expected)))
    eps = sorted({float(getattr(l.module, "eps", 1e-5)) for l in layers if l.kind == "bn"})
    note = ""
    if eps != [1e-5]:
        note = (
            f" Your batch norm layers use eps = {', '.join(f'{e:g}' for e in eps)}; the "
            f"lecture's (and PyTorch's) default is 1e-5: BatchNorm1d(width)."
        )
    return (
        "wrong_values",
        f"The layers are in the right order, but with the reference's weights copied in, "
        f"the output on a fixed mini-batch of {_BATCH} differs:\n"
        f"{cmp_line('logits', got_np, expected)}\n{note}".rstrip(),
    ), 0.0


# --------------------------------------------------------------------------- grader


def _grade(submission: Any) -> Feedback:
    import torch

    if isinstance(submission, torch.nn.Module):
        return Feedback(
            False,
            f"You passed a network ({type_name(submission)}), the result of calling your "
            f"function. Pass the function itself, without calling it: "
            f"grade('build_bn_net', build), not grade('build_bn_net', build(64, [100], 10)).",
            "wrong_type",
        )
    problem = _check_signature(submission, CALLS[0], "fn(in_features, widths, out_features)")
    if problem is not None:
        return Feedback(False, problem[1], problem[0])
    largest, torch_bn, example = 0.0, False, ""
    for seed, call in enumerate(CALLS):
        in_features, widths, out_features = call
        call_text = _call_text(call)
        # A fresh list per call (a submission may consume it); forked RNG: grading leaves
        # the caller's random state alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            result = _call_submission(submission, (in_features, list(widths), out_features),
                                      ARG_NAMES)
        if result.problem is not None:
            mistake, text = result.problem
            if mistake != "not_implemented":  # which call failed helps to find the bug
                text += f"\n\n(The grader called {call_text}.)"
            return Feedback(False, text, mistake)
        problem = _check_returned(result.value, call_text)
        if problem is not None:
            return Feedback(False, problem[1], problem[0])
        model = result.value
        layers = [_classify(n, m) for n, m in _flatten(model)]
        problems = _layer_problems(layers, call)
        if problems:
            mistake, main = problems[0]
            others = [text for _, text in problems[1:]]
            parts = [
                main,
                *(["Also:\n" + "\n".join(f"- {t}" for t in others)] if others else []),
                f"Your network, from {call_text}:\n  {_chain(layers)}\n"
                f"Expected:\n  {_expected_chain(*call)}",
            ]
            return Feedback(False, "\n\n".join(parts), mistake, solution=FIX)
        with torch.random.fork_rng(devices=[]):
            problem, diff = _forward_problem(model, layers, call, seed)
        if problem is not None:
            return Feedback(
                False, f"{problem[1]}\n\n(The grader called {call_text}.)", problem[0],
                solution=FIX if problem[0] == "wrong_values" else "",
            )
        largest = max(largest, diff)
        torch_bn = torch_bn or any(
            isinstance(l.module, torch.nn.modules.batchnorm._BatchNorm) for l in layers
        )
        example = f"{call_text}:\n  {_chain(layers)}"
    n_params = _n_params(CALLS[-1], bias=False)
    n_with_bias = _n_params(CALLS[-1], bias=True)
    message = (
        f"✓ Correct: all {len(CALLS)} networks have the lecture's layers in the lecture's order, "
        f"and with the reference's weights copied in their outputs match on a fixed "
        f"mini-batch (largest difference {fmt_diff(largest)}). For {example}\n"
        f"That is {n_params:,} parameters; the redundant biases would have added "
        f"{n_with_bias - n_params:,} more."
    )
    if torch_bn:
        message += (
            "\nNote: you used torch.nn.BatchNorm1d. That is fine (it computes the same as "
            "course_lib.nn.BatchNorm1d), but the exercise asks for the course's own layer."
        )
    return Feedback(True, message, None)


@register(
    "build_bn_net",
    "fn(in_features, widths, out_features) -> nn.Sequential: Linear(bias=False) -> "
    "BatchNorm1d -> Sigmoid per hidden width, then a Linear output layer (chapter 3)",
)
def grade_build_bn_net(submission: Any) -> Feedback:
    """Grade ``fn(in_features, widths, out_features) -> nn.Sequential`` against ``make_mlp``."""
    return _grade(submission)
