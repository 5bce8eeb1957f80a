r"""Chapter 3 exercise: build the lecture's network with batch norm in it.

- ``build_bn_net``: ``fn(in_features, widths, out_features) -> nn.Sequential``: per hidden
  width ``Linear(fan_in, width, bias=False) -> BatchNorm1d(width) -> Sigmoid`` (the
  lecture's :math:`z^{[l]} = W^{[l]} a^{[l-1]} \to \tilde z^{[l]} \to a^{[l]}`), then a
  plain ``Linear(widths[-1], out_features)`` producing the logits.

The reference is :func:`_reference_net`, the lecture's layers built from ``torch.nn`` and the
core's :class:`course_lib.nn.BatchNorm1d` (the same network as the experiments' ``make_mlp``
with ``bn="before"``; graders use the core only). The grader is :func:`._core.run_cases` with a ``read`` hook (same guard as every grader): each case
calls the builder with other widths (so sizes cannot be hard-coded); the hook reads the
returned ``nn.Sequential`` layer by layer (nested blocks flattened) and names each classic
mistake (:data:`MISTAKE_IDS`, plus invalid batch norm arguments and a float16 network); if the
layers are right it copies the reference's weights (random ``gamma``, ``beta``, output bias)
into a deep copy (the learner's model is never changed) and returns its logits on a fixed
mini-batch in training mode, compared with the reference's (this checks ``eps`` and that
``gamma`` and ``beta`` are used). ``torch.nn.BatchNorm1d`` is accepted, with a note.
"""

from __future__ import annotations

import collections
import copy
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._compare import type_name
from ._sandbox import safe_str
from ._core import Case, Feedback, Problem, register, run_cases

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
    except Exception:  # noqa: BLE001 - then it is some other activation
        return False


def _classify(name: str, module: Any) -> _Layer:
    from torch import nn

    from ..borrow import is_batchnorm

    if isinstance(module, nn.Linear):
        return _Layer(name, "linear", module)
    if is_batchnorm(module):
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
        groups.setdefault((mistake, text), []).extend([(where, detail)] if where else [])
    out = []
    for (mistake, text), places in groups.items():
        if any(detail for _, detail in places):
            text = "; ".join(f"{w}: {d}" for w, d in places) + f". {text}"
        elif places:
            hidden = [w.split()[-1] for w, _ in places if w.startswith("Hidden")]
            numbers = ", ".join(hidden[:-1]) + " and " * (len(hidden) > 1) + "".join(hidden[-1:])
            wheres = [f"Hidden layer{'s' * (len(hidden) > 1)} {numbers}"] * bool(hidden)
            text = "; ".join(wheres + [w for w, _ in places if not w.startswith("Hidden")]) + f": {text}"
        out.append((mistake, text))
    return sorted(out, key=lambda p: MISTAKE_IDS.index(p[0]))  # stable: layers stay in order


def _n_params(call: tuple[int, tuple[int, ...], int], bias: bool) -> int:
    in_features, widths, out_features = call
    total, fan_in = 0, in_features
    for w in widths:
        total += fan_in * w + (w if bias else 0) + 2 * w  # W (and b), gamma, beta
        fan_in = w
    return total + fan_in * out_features + out_features


# ------------------------------------------------------------------ the returned value


def _check_returned(value: Any, call_text: str) -> Problem | None:
    from torch import nn

    if isinstance(value, nn.Sequential):
        return None
    if value is None:
        what, fix = "None", "Did you forget `return nn.Sequential(*layers)` at the end?"
    elif isinstance(value, type):
        what = f"the class {value.__module__}.{value.__qualname__}, not a network"
        fix = "Create one: nn.Sequential(layer1, layer2, ...)."
    elif isinstance(value, (list, tuple)) and all(isinstance(v, nn.Module) for v in value):
        what = f"a {type(value).__name__} of {len(value)} layers"
        fix = "Wrap them in a network: return nn.Sequential(*layers)."
    elif isinstance(value, nn.Module):
        what = f"a {type_name(value)}, expected an nn.Sequential"
        fix = "So the order of the layers is the order they run in: nn.Sequential(*layers)."
    elif callable(value):
        what = f"a function ({getattr(value, '__name__', type(value).__name__)}), not a network"
        fix = "Build the layers inside your function and return nn.Sequential(*layers)."
    else:
        what, fix = f"a {type_name(value)}, expected an nn.Sequential of layers", ""
    mistake = "returned_none" if value is None else "wrong_type"
    return Problem(mistake, f"{call_text} returned {what}. {fix}".rstrip())


def _settings_problem(layers: list[_Layer], call_text: str) -> Problem | None:
    """Batch norm arguments that are not valid numbers, and a float16 network."""
    for layer in layers:
        if layer.kind != "bn":
            continue
        eps, momentum = getattr(layer.module, "eps", None), getattr(layer.module, "momentum", 0.1)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
            bad = f"eps={eps!r}"
        elif momentum is not None and (isinstance(momentum, bool) or not isinstance(
                momentum, numbers.Real) or not 0 <= momentum <= 1):
            bad = f"momentum={momentum!r}"
        else:
            continue
        return Problem(
            "invalid_argument",
            f"Layer {layer.name} of {call_text} is {_describe(layer)} with {bad}. eps must be "
            f"a small positive number and momentum a number in [0, 1] (or None); the "
            f"defaults (eps=1e-5, momentum=0.1) are what this network needs: "
            f"BatchNorm1d(width).",
        )
    low = sorted({str(p.dtype) for l in layers for p in l.module.parameters()
                  if p.is_floating_point() and p.element_size() < 4})
    if low:
        return Problem(
            "wrong_dtype",
            f"The network from {call_text} has {', '.join(low)} parameters. Half precision "
            f"keeps about 3 significant digits: too few for batch norm's small differences "
            f"and for training on a CPU. Keep PyTorch's default float32 (drop the .half() "
            f"or dtype=torch.float16).",
        )
    return None


# --------------------------------------------------------------- the numerical check


def _copy_weights(ref: Any, layers: list[_Layer]) -> None:
    import torch

    ref_layers = [_classify(n, m) for n, m in _flatten(ref)]
    with torch.no_grad():
        for kind in ("linear", "bn"):
            mine = [l.module for l in layers if l.kind == kind]
            for src, dst in zip([l.module for l in ref_layers if l.kind == kind], mine):
                dst.weight.copy_(src.weight)
                if dst.bias is not None:
                    dst.bias.copy_(src.bias if src.bias is not None else torch.zeros_like(dst.bias))


def _reference_net(in_features: int, widths: tuple[int, ...], out_features: int, seed: int) -> Any:
    """``Linear(bias=False) -> BatchNorm1d -> Sigmoid`` per hidden width, then the output
    ``Linear``, with weights drawn from a generator seeded with ``seed``."""
    import torch
    from torch import nn

    from ..nn import BatchNorm1d

    gen = torch.Generator().manual_seed(1000 + seed)
    layers: dict[str, nn.Module] = {}
    for l, (n_in, n_out) in enumerate(zip((in_features, *widths), widths), start=1):
        layers[f"linear{l}"] = nn.Linear(n_in, n_out, bias=False)
        layers[f"bn{l}"] = BatchNorm1d(n_out)
        layers[f"act{l}"] = nn.Sigmoid()
    layers["output"] = nn.Linear(widths[-1], out_features)
    net = nn.Sequential(collections.OrderedDict(layers))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, m.in_features ** -0.5, generator=gen)
    return net


def _cases() -> tuple[list[Case], dict[str, Any]]:
    """The cases (expected: the reference's logits on a fixed batch, float32) and, per case
    label, the reference network (random gamma, beta and output bias) and the batch."""
    import torch

    from ..borrow import is_batchnorm

    cases, refs = [], {}
    for seed, (in_features, widths, out_features) in enumerate(CALLS):
        ref = _reference_net(in_features, tuple(widths), out_features, seed)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for bn in (m for m in ref.modules() if is_batchnorm(m)):
                bn.weight.copy_(0.5 + 1.5 * torch.rand(bn.num_features, generator=gen))
                bn.bias.copy_(2.0 * torch.rand(bn.num_features, generator=gen) - 1.0)
            ref.output.bias.copy_(torch.randn(out_features, generator=gen))
            X = 1.0 + 2.0 * torch.randn(_BATCH, in_features, generator=gen.manual_seed(100 + seed))
            expected = ref(X).numpy()
        label = _call_text((in_features, widths, out_features))
        cases.append(Case(label, (in_features, list(widths), out_features), (expected,)))
        refs[label] = (ref, X)
    return cases, refs


# --------------------------------------------------------------------------- grader


@register(
    "build_bn_net",
    "fn(in_features, widths, out_features) -> nn.Sequential: Linear(bias=False) -> "
    "BatchNorm1d -> Sigmoid per hidden width, then a Linear output layer (chapter 3)",
)
def grade_build_bn_net(submission: Any) -> Feedback:
    """Grade ``fn(in_features, widths, out_features) -> nn.Sequential`` against the reference
    network (:func:`_reference_net`)."""
    import torch

    if issubclass(type(submission), torch.nn.Module):
        return Feedback(
            False,
            f"You passed a network ({type_name(submission)}), the result of calling your "
            f"function. Pass the function itself, without calling it: "
            f"grade('build_bn_net', build), not grade('build_bn_net', build(64, [100], 10)).",
            "wrong_type",
        )
    cases, refs = _cases()
    seen: dict[str, list[_Layer]] = {}  # per call, the layers read (for the messages)

    def read(value: Any, case: Case) -> tuple[np.ndarray, ...] | Problem:
        call = (case.args[0], tuple(case.args[1]), case.args[2])
        problem = _check_returned(value, case.label)
        if problem is not None:
            return problem
        model = copy.deepcopy(value)  # grading must not change the learner's own model
        layers = [_classify(n, m) for n, m in _flatten(model)]
        problems = _layer_problems(layers, call)
        if problems:
            others = [text for _, text in problems[1:]]
            parts = [
                problems[0][1],
                *(["Also:\n" + "\n".join(f"- {t}" for t in others)] if others else []),
                f"Your network, from {case.label}:\n  {_chain(layers)}\n"
                f"Expected:\n  {_expected_chain(*call)}",
            ]
            return Problem(problems[0][0], "\n\n".join(parts), FIX)
        problem = _settings_problem(layers, case.label)
        if problem is not None:
            return problem
        seen[case.label] = layers
        ref, X = refs[case.label]
        _copy_weights(ref, layers)
        param = next(model.parameters(), None)
        model.train()
        try:
            with torch.no_grad():
                got = model(X.to(param.dtype if param is not None else torch.float32))
        except (Exception, SystemExit, GeneratorExit) as exc:  # noqa: BLE001 - the learner's forward
            return Problem("exception", f"Your network raised {type(exc).__name__} on a "
                           f"mini-batch of shape {tuple(X.shape)}: {safe_str(exc)}")
        want = case.expected[0].shape
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != want:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type_name(got)
            return Problem("wrong_shape", f"On a mini-batch of shape {tuple(X.shape)} your "
                           f"network returned {shape}, expected logits of shape {want}.")
        # float32 tolerances: the network runs in float32 however the learner wrote it.
        return (got.detach().double().numpy().astype(np.float32),)

    feedback = run_cases(
        submission,
        cases=cases,
        arg_names=ARG_NAMES,
        output_names=("logits",),
        read=read,
        fix=FIX,
        hint=(
            f"The layers are in the right order, but with the reference's weights copied "
            f"in, the outputs on a fixed mini-batch of {_BATCH} differ. Does every batch "
            f"norm layer use gamma, beta and the default eps = 1e-5?"
        ),
        success=(
            "all {n} networks have the lecture's layers in the lecture's order, and with "
            "the reference's weights copied in their outputs match on a fixed mini-batch "
            "(largest difference {diff})."
        ),
    )
    layers = [l for ls in seen.values() for l in ls]
    if feedback.mistake == "wrong_values":
        eps = sorted({float(l.module.eps) for l in layers if l.kind == "bn"})
        if eps != [1e-5]:
            note = (f"Your batch norm layers use eps = {', '.join(f'{e:g}' for e in eps)}; "
                    f"the lecture's (and PyTorch's) default is 1e-5: BatchNorm1d(width).")
            return Feedback(False, f"{feedback.message}\n\n{note}", feedback.mistake,
                            feedback.solution)
    if not feedback.passed:
        return feedback
    n_params, n_with_bias = _n_params(CALLS[-1], bias=False), _n_params(CALLS[-1], bias=True)
    last = cases[-1].label
    message = (
        f"{feedback.message} For {last}:\n  {_chain(seen[last])}\n"
        f"That is {n_params:,} parameters; the redundant biases would have added "
        f"{n_with_bias - n_params:,} more."
    )
    if any(l.kind == "bn" and type(l.module).__module__.startswith("torch") for l in layers):
        message += (
            "\nNote: you used torch.nn.BatchNorm1d. That is fine (it computes the same as "
            "course_lib.nn.BatchNorm1d), but the exercise asks for the course's own layer."
        )
    return Feedback(True, message, None)
