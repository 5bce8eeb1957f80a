"""Input validation, the one place for it: shared by the numpy reference
(:mod:`course_lib.batchnorm`), the torch layers (:mod:`course_lib.nn`,
:mod:`course_lib.norm_layers`, :mod:`course_lib.distributed`) and the rest of the package.

Every check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, wrong
content) with a message in torch.nn's style: what was expected, what arrived, then how to fix
it. Where torch has a message for the same problem we start with torch's exact words, so a
learner who searches for the error finds the usual answers.

The checks work on shapes, dtypes and counts, so one helper serves numpy arrays and torch
tensors alike. Only :func:`check_finite` looks at values; it picks numpy or torch from the
array's type and imports torch lazily, so ``import course_lib.batchnorm`` never needs torch.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Sequence

import numpy as np

__all__ = [
    "is_torch",
    "is_int",
    "is_real",
    "to_numpy64",
    "check_int",
    "check_mode",
    "check_number",
    "as_float64_array",
    "check_float_array",
    "check_min_ndim",
    "check_same_dtype",
    "check_channel_vector",
    "check_channel_count",
    "check_unit_interval",
    "check_values_per_channel",
    "check_eps",
    "check_finite",
    "check_same_shape",
    "check_num_features",
    "check_float_tensor",
    "check_module",
    "check_ndim",
    "check_trailing_shape",
    "check_num_groups",
    "check_spatial_values",
    "check_ghost_batches",
]

_NUMPY_FLOATS = (np.float32, np.float64)


def is_torch(x: Any) -> bool:
    """Whether ``x`` is a torch object (tested without importing torch)."""
    return type(x).__module__.startswith("torch")


def to_numpy64(x: Any) -> np.ndarray:
    """``x`` (numpy array, torch tensor, number or nested list) as a float64 numpy array."""
    if is_torch(x):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def is_int(value: Any) -> bool:
    """An integer, Python's or numpy's; never ``bool`` (``True`` is not a count)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (int, float, numpy scalar); never ``bool``."""
    return isinstance(value, Real) and not isinstance(value, bool)


def _where(where: str | None) -> str:
    return f"{where}: " if where else ""


def check_int(
    value: Any,
    name: str,
    minimum: int | None = None,
    maximum: int | None = None,
    where: str | None = None,
) -> int:
    """Return ``value`` as an ``int``; raise unless it is an integer in [minimum, maximum].

    ``where`` (e.g. the function's name) starts the message.
    """
    if not is_int(value):
        raise TypeError(
            f"{_where(where)}{name} must be an int (got {type(value).__qualname__} {value!r}); "
            f"pass a whole number, e.g. {name}={1 if minimum is None else max(minimum, 1)}"
        )
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is None:
            need = f"an int >= {minimum}"
        elif minimum is None:
            need = f"an int <= {maximum}"
        else:
            need = f"between {minimum} and {maximum}"
        raise ValueError(f"{_where(where)}{name} must be {need} (got {value})")
    return value


def check_number(
    value: Any,
    name: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    where: str | None = None,
) -> float:
    """Return ``value`` as a finite ``float``; raise unless it is a real number in range.

    ``above``/``below`` are strict bounds, ``at_least`` an inclusive one. ``where`` (e.g. the
    function's name) starts the message.
    """
    if not is_real(value):
        raise TypeError(
            f"{_where(where)}{name} must be a real number (got {type(value).__qualname__} "
            f"{value!r}); pass a float"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{_where(where)}{name} must be finite (got {value})")
    if above is not None and below is not None:
        if not above < value < below:
            raise ValueError(
                f"{_where(where)}{name} must be between {above:g} and {below:g} (got {value:g})"
            )
    elif above is not None and not value > above:
        raise ValueError(f"{_where(where)}{name} must be > {above:g} (got {value:g})")
    elif below is not None and not value < below:
        raise ValueError(f"{_where(where)}{name} must be < {below:g} (got {value:g})")
    if at_least is not None and not value >= at_least:
        raise ValueError(f"{_where(where)}{name} must be >= {at_least:g} (got {value:g})")
    return value


def as_float64_array(
    value: Any,
    name: str,
    *,
    where: str | None = None,
    nonempty: bool = False,
    finite: bool = False,
) -> np.ndarray:
    """``value`` (array-like of integers or floats) as a float64 numpy array, checked."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{_where(where)}expected {name} to be an integer or float array (got dtype "
            f"{arr.dtype}); convert with np.asarray({name}, dtype=float)"
        )
    arr = arr.astype(np.float64, copy=False)
    if nonempty and arr.size == 0:
        raise ValueError(f"{_where(where)}expected at least one value in {name} (got none)")
    if finite and not np.all(np.isfinite(arr)):
        n_bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"{_where(where)}{name} contains {n_bad} NaN or infinite value(s); pass finite "
            "values (find them with np.argwhere(~np.isfinite(...)))"
        )
    return arr


def check_mode(mode: Any, where: str | None = None, allow_none: bool = False) -> Any:
    """Return ``mode``; raise unless it is ``"train"`` or ``"eval"`` (or ``None`` if allowed)."""
    if mode in ("train", "eval") or (allow_none and mode is None):
        return mode
    keep = ", or None to keep each module's mode" if allow_none else ""
    raise ValueError(
        f"{_where(where)}mode must be 'train' (batch statistics and noise, as in a training "
        f"step) or 'eval' (running statistics, no noise){keep} (got {mode!r})"
    )


def _shape_str(shape: Sequence[int]) -> str:
    return str(tuple(int(s) for s in shape))


def check_float_array(x: Any, name: str = "x") -> None:
    """Raise ``TypeError`` unless ``x`` is a numpy array of float32 or float64."""
    if not isinstance(x, np.ndarray):
        kind = type(x).__module__ + "." + type(x).__qualname__
        kind = kind.removeprefix("builtins.")
        if is_torch(x):
            fix = f"{name}.detach().cpu().numpy()"
        else:
            fix = f"np.asarray({name}, dtype=np.float32)"
        raise TypeError(f"expected a numpy array, got {kind}; convert with {fix}")
    if x.dtype.type not in _NUMPY_FLOATS:
        raise TypeError(
            f"expected a float32 or float64 array, got {x.dtype}; "
            f"convert with {name}.astype(np.float32)"
        )


def check_min_ndim(ndim: int) -> None:
    """Raise ``ValueError`` unless the input has a batch axis and a channel axis."""
    if ndim < 2:
        raise ValueError(
            f"expected 2D or higher input (N, C, ...) (got {ndim}D input); "
            "a single example of D features is x[None, :] (shape (1, D)), "
            "but batch norm needs a batch of them"
        )


def check_same_dtype(x: Any, **others: Any) -> None:
    """Raise ``TypeError`` unless every array in ``others`` has ``x``'s dtype.

    Mixing float32 and float64 would silently promote the result to float64 (numpy) or fail
    deep inside a kernel (torch); naming the culprit is kinder.
    """
    for name, value in others.items():
        if value.dtype != x.dtype:
            cast = f"{name}.to(x.dtype)" if is_torch(value) else f"{name}.astype(x.dtype)"
            raise TypeError(
                f"{name} has dtype {value.dtype} but x has dtype {x.dtype}; "
                f"they must match: convert with {cast}"
            )


def check_channel_vector(
    value: Any, name: str, num_channels: int, source: str = "x.shape[1]"
) -> None:
    """Raise ``ValueError`` unless ``value`` holds one entry per channel, shape ``(C,)``.

    ``source`` names where the channel count comes from, for the message.
    """
    if tuple(value.shape) != (num_channels,):
        raise ValueError(
            f"expected {name} of shape (C,) = ({num_channels},), one value per channel of "
            f"{source} = {num_channels} (got {name} of shape {_shape_str(value.shape)}); "
            f"for a (N, C, ...) input pass a vector of length C, e.g. np.ones({num_channels})"
        )


def check_channel_count(t: Any, name: str, num_channels: int) -> None:
    """Raise torch's ``ValueError`` unless the per-channel tensor ``t`` has one value per
    channel: "weight should contain 4 elements not 5", then the fix."""
    n = t.numel() if is_torch(t) else int(np.size(t))
    fix = (
        f"pass one value per channel of input.shape[1] = {num_channels}, a tensor of shape "
        f"({num_channels},)"
    )
    if n != num_channels:
        raise ValueError(
            f"{name} should contain {num_channels} elements not {n} (shape "
            f"{_shape_str(t.shape)}); {fix}"
        )
    if t.ndim != 1:
        raise ValueError(f"{name} should be a vector, not of shape {_shape_str(t.shape)}; {fix}")


def check_unit_interval(value: Any, name: str) -> float:
    """Return ``value`` as a float; raise unless it is a number in [0, 1] (a weight)."""
    if not is_real(value):
        raise TypeError(
            f"expected {name} to be a number in [0, 1] (got {type(value).__qualname__} "
            f"{value!r}); pass a float such as {name}=0.1"
        )
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"expected {name} in [0, 1] (got {value}); it is a weight in an average"
        )
    return value


def check_values_per_channel(size: Any, *, allow_empty: bool = False) -> None:
    """Raise torch's ``ValueError`` when a channel has a single value in training.

    ``size`` is the input's shape ``(N, C, *spatial)``; each channel's statistics use
    ``N * prod(spatial)`` values. With one value its variance is 0 and the output is 0 for any
    input: nothing to learn from, so torch refuses. ``size`` is printed as given, so a
    ``torch.Size`` reproduces torch's message word for word.

    Args:
        size: the input's shape.
        allow_empty: accept an empty batch (torch does: it returns an empty output).
    """
    m = math.prod((size[0], *size[2:]))
    if m == 1 or (m == 0 and not allow_empty):
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {size}; "
            "use a batch of at least 2 examples, or normalize with running statistics "
            "(eval mode) for a single example"
        )


def check_eps(eps: Any, training: bool = True, where: str = "batch_norm") -> float:
    """Return ``eps`` as a float; raise unless it is a finite number, positive in training.

    torch's rule for the sign: ``eps <= 0`` is refused in training (a constant channel would
    divide by 0), ``eps < 0`` always. NaN turns every output into NaN and inf every output
    into beta, so neither is accepted. ``where`` (the function or layer) starts the message.
    """
    if not is_real(eps):
        raise TypeError(
            f"{where}: expected eps to be a positive number, got {type(eps).__qualname__} "
            f"({eps!r}); pass a float such as eps=1e-5"
        )
    eps = float(eps)
    if not math.isfinite(eps):
        raise ValueError(
            f"{where} eps must be a finite number, but got {eps}; eps is added to the "
            "variance to keep 1 / sqrt(var + eps) finite, use e.g. 1e-5"
        )
    if training and eps <= 0.0:
        raise ValueError(
            f"{where} eps must be positive during training, but got {eps}; "
            "eps keeps 1 / sqrt(var + eps) finite for a constant feature, use e.g. 1e-5"
        )
    if eps < 0.0:
        raise ValueError(f"{where} eps must be non-negative, but got {eps}; use e.g. 1e-5")
    return eps


def check_finite(
    x: Any, name: str = "x", channel_means: Any = None, channel_vars: Any = None
) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or inf, saying how many, where, and what to do.

    One NaN poisons its whole channel: the channel's mean, variance, every output in it and,
    in training, the running statistics for good. Works on numpy arrays and torch tensors.

    Args:
        x: the input, shape ``(N, C, ...)``.
        name: how to call ``x`` in the message.
        channel_means: optional per-channel means of ``x`` computed anyway. A NaN or inf
            anywhere in a channel makes its mean non-finite, so finite means prove a finite
            input at no cost and the full scan runs only when something is wrong.
        channel_vars: optional per-channel variances of ``x``, computed from ``x - mu``. A
            non-finite input or mean makes them non-finite too, so they alone prove a finite
            input; and with finite values they can still overflow (``(x - mu) ** 2`` for
            ``|x|`` near the square root of the dtype's largest value), which is refused
            too, or the output would silently be ``beta``.
    """
    if is_torch(x):
        import torch as xp

        finder = f"torch.argwhere(~torch.isfinite({name}))"
    else:
        xp = np
        finder = f"np.argwhere(~np.isfinite({name}))"
    stats = [s for s in (channel_means, channel_vars) if s is not None]
    if stats and all(bool(xp.isfinite(s).all()) for s in stats):
        return
    bad = ~xp.isfinite(x)
    count = int(bad.sum())
    if count == 0:
        if not stats:
            return
        # Finite values whose sum or squares overflowed: only possible for huge values.
        raise ValueError(
            f"the per-channel mean or variance of {name} overflowed {x.dtype} (largest "
            f"|value| {float(abs(x).max()):.3g}); the output would be meaningless. Rescale "
            "the input (e.g. divide it by its largest value) or use a wider dtype"
        )
    n_nan = int(xp.isnan(x).sum())
    where = xp.argwhere(bad)
    first = tuple(int(i) for i in where[0])
    channels = sorted({int(c) for c in where[:, 1]})
    shown = ", ".join(map(str, channels[:10])) + (", ..." if len(channels) > 10 else "")
    raise ValueError(
        f"{name} contains {count} non-finite value{'s' if count > 1 else ''} "
        f"({n_nan} NaN, {count - n_nan} inf) in channel{'s' if len(channels) > 1 else ''} "
        f"[{shown}], the first at index {first}; each would turn its whole channel's mean, "
        f"variance and output into NaN. Find them with {finder} and look upstream: "
        "missing values in the data, or an earlier layer that diverged (lower the learning rate)"
    )


def check_same_shape(dout: Any, shape: Sequence[int]) -> None:
    """Raise ``ValueError`` unless the upstream gradient has the forward input's shape."""
    if tuple(dout.shape) != tuple(shape):
        raise ValueError(
            f"expected dout of the forward input's shape {_shape_str(shape)} "
            f"(got {_shape_str(dout.shape)}); dout is the gradient of the loss with respect "
            "to this layer's output, which has the input's shape: pass the cache from the same "
            "forward call"
        )


def check_num_features(
    size: Any,
    num_features: int,
    layer: str = "BatchNorm",
    *,
    rebuild: str | None = None,
    name: str = "num_features",
) -> None:
    """Raise ``ValueError`` unless the input's dim 1 has ``num_features`` channels.

    ``rebuild`` is how to build the layer for this input (default ``f"{layer}({C})"``).
    """
    got = int(size[1])
    if got != num_features:
        raise ValueError(
            f"expected input with {name}={num_features} channels in dim 1 "
            f"(got {got} channels, input size {_shape_str(size)}); build the layer as "
            f"{rebuild or f'{layer}({got})'} or fix the previous layer's output size"
        )


def check_float_tensor(x: Any, param_dtype: Any = None) -> None:
    """Raise ``TypeError`` for a non-float tensor or one whose dtype the parameters can't take.

    Like torch, a float16/bfloat16 input may meet float32 parameters (mixed precision).

    Args:
        x: the input tensor.
        param_dtype: dtype of the layer's parameters and buffers, ``None`` if it has none.
    """
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"expected input to be a torch.Tensor, got {type(x).__qualname__}; "
            "convert with torch.as_tensor(x, dtype=torch.float32)"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"expected a floating point input, got {x.dtype}; convert with x.float()"
        )
    low_precision = (torch.float16, torch.bfloat16)
    if param_dtype is None or x.dtype == param_dtype:
        return
    if x.dtype in low_precision and param_dtype == torch.float32:
        return
    raise TypeError(
        f"expected input of dtype {param_dtype} to match the layer's parameters and buffers "
        f"(got {x.dtype}); convert the input with x.to({param_dtype}) or the layer with "
        f"layer.to({x.dtype})"
    )


def check_module(model: Any) -> None:
    """Raise ``TypeError`` unless ``model`` is a ``torch.nn.Module``."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"expected model to be a torch.nn.Module (got {type(model).__qualname__})"
        )


def check_ndim(ndim: int, allowed: Sequence[int], layer: str, shapes: str) -> None:
    """Raise ``ValueError`` unless the input has one of the ``allowed`` numbers of dimensions.

    ``shapes`` says what the layer takes, e.g. ``"(N, C, H, W) or (C, H, W)"``.
    """
    if ndim not in allowed:
        names = " or ".join(f"{d}D" for d in allowed)
        raise ValueError(f"expected {names} input (got {ndim}D input); {layer} takes {shapes}")


def check_trailing_shape(size: Any, normalized_shape: Sequence[int]) -> None:
    """Raise ``ValueError`` unless the input ends in ``normalized_shape`` (layer norm)."""
    k = len(normalized_shape)
    if len(size) < k or tuple(size[len(size) - k:]) != tuple(normalized_shape):
        raise ValueError(
            f"expected input with shape [*, {', '.join(map(str, normalized_shape))}] "
            f"(got input of size {list(size)}); LayerNorm normalizes the trailing "
            f"axes, so build it as LayerNorm({tuple(size[1:])}) or fix the input"
        )


def check_num_groups(num_groups: Any, num_channels: int) -> None:
    """Raise ``ValueError`` unless ``num_groups`` is a positive int dividing ``num_channels``."""
    if not is_int(num_groups) or num_groups < 1:
        raise ValueError(f"num_groups must be a positive int (got {num_groups!r})")
    if num_channels % num_groups != 0:
        raise ValueError(
            f"num_channels must be divisible by num_groups (got num_channels={num_channels}, "
            f"num_groups={num_groups}); pick num_groups among the divisors of {num_channels}"
        )


def check_spatial_values(size: Any, what: str) -> None:
    """Raise torch's ``ValueError`` when each instance has a single value (instance norm)."""
    if math.prod(size[2:]) <= 1:
        raise ValueError(
            f"Expected more than 1 spatial element when training, got input size {size}; "
            f"{what} needs H * W > 1"
        )


def check_ghost_batches(x: Any, ghost_size: Any, eps: Any, momentum: Any) -> None:
    """Every check of ghost batch norm in training, before the first ghost batch updates
    the running statistics: the ghost size, each ghost batch's values per channel, ``eps``,
    ``momentum`` and a finite input."""
    if not is_int(ghost_size) or ghost_size < 1:
        raise ValueError(
            f"the ghost size must be a positive int, the number of examples in each ghost "
            f"batch (got ghost_size={ghost_size!r}); use e.g. ghost_size=32"
        )
    check_float_tensor(x)
    check_min_ndim(x.dim())
    n, g = int(x.shape[0]), int(ghost_size)
    last = n % g
    spatial = math.prod(x.shape[2:])
    if n > 0 and (min(n, g) * spatial <= 1 or (last and last * spatial <= 1)):
        raise ValueError(
            f"{n} examples in ghost batches of ghost size {g} leave a ghost batch with a "
            "single value per channel, which batch norm cannot normalize in training; pick a "
            f"ghost size that leaves at least 2 examples in the last ghost batch ({n} % "
            "ghost_size != 1)"
        )
    check_eps(eps, where="ghost_batch_norm")
    check_unit_interval(momentum, "momentum")
    check_finite(x)

