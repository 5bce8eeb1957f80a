"""Tests for course_lib.nn: the from-scratch BatchNorm modules are drop-in torch.nn twins.

Same outputs, gradients, running statistics, state_dicts and errors as torch.nn.BatchNorm*d,
step after step, and a small network trained with either one ends up the same.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import course_lib.nn as cnn

SEEDS = range(5)
DTYPES = [torch.float32, torch.float64]
# (class name, input shape)
CASES = [
    ("BatchNorm1d", (16, 5)),
    ("BatchNorm1d", (8, 5, 7)),
    ("BatchNorm2d", (6, 5, 4, 3)),
    ("BatchNorm3d", (4, 5, 2, 3, 3)),
]
IDS = [f"{name}-{len(shape)}D" for name, shape in CASES]


def twins(name, num_features=5, seed=0, **kwargs):
    """torch.nn's layer and ours with the same (random, not 1/0) weight and bias."""
    ref = getattr(torch.nn, name)(num_features, **kwargs)
    ours = getattr(cnn, name)(num_features, **kwargs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p_ref, p_ours in zip(ref.parameters(), ours.parameters()):
            p_ref.copy_(torch.randn(p_ref.shape, generator=g) * 0.5 + 1.0)
            p_ours.copy_(p_ref)
    return ref, ours


def assert_same_state(ref, ours):
    sd_ref, sd_ours = ref.state_dict(), ours.state_dict()
    assert list(sd_ref) == list(sd_ours)
    for key in sd_ref:
        assert_close(sd_ours[key], sd_ref[key], msg=key)


def step(layer, x, dout):
    """One forward + backward with a random upstream gradient; returns y, dx, param grads."""
    x = x.clone().requires_grad_()
    for p in layer.parameters():
        p.grad = None
    y = layer(x)
    y.backward(dout)
    return [y.detach(), x.grad] + [p.grad for p in layer.parameters()]


def train_both(ref, ours, shape, dtype, steps, seed):
    """Train both layers on the same batches; compare every step's outputs, gradients and
    state, stacked per quantity (one assert_close per quantity keeps the test fast)."""
    g = torch.Generator().manual_seed(seed)
    history = {"ref": [], "ours": []}
    for _ in range(steps):
        x = torch.randn(shape, generator=g, dtype=dtype) * 3.0 + 1.5
        dout = torch.randn(shape, generator=g, dtype=dtype)
        for key, layer in (("ref", ref), ("ours", ours)):
            state = [t for t in layer.state_dict().values() if t.is_floating_point()]
            history[key].append(step(layer, x, dout) + [t.clone() for t in state])
    names = ["y", "dx"] + [f"grad {n}" for n, _ in ref.named_parameters()]
    names += [n for n, t in ref.state_dict().items() if t.is_floating_point()]
    for i, name in enumerate(names):
        got = torch.stack([h[i] for h in history["ours"]])
        want = torch.stack([h[i] for h in history["ref"]])
        assert_close(got, want, msg=lambda m, name=name: f"{name}: {m}")
    assert_same_state(ref, ours)


# ---------------------------------------------------------------- same as torch.nn


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, shape", CASES, ids=IDS)
def test_training_steps_match_torch(name, shape, dtype, momentum, seed):
    ref, ours = twins(name, seed=seed, momentum=momentum, dtype=dtype)
    train_both(ref, ours, shape, dtype, steps=20, seed=seed)
    assert int(ours.num_batches_tracked) == 20
    # and then eval mode normalizes with the running statistics, identically
    ref.eval(), ours.eval()
    x = torch.randn(shape, dtype=dtype) * 3.0 + 1.5
    dout = torch.randn(shape, dtype=dtype)
    for got, want in zip(step(ours, x, dout), step(ref, x, dout)):
        assert_close(got, want)
    assert_same_state(ref, ours)  # eval mode leaves the running statistics alone


@pytest.mark.parametrize("track_running_stats", [True, False])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("name, shape", CASES, ids=IDS)
def test_affine_and_tracking_options_match_torch(name, shape, affine, track_running_stats):
    kwargs = dict(affine=affine, track_running_stats=track_running_stats)
    ref, ours = twins(name, **kwargs)
    assert (ours.weight is None, ours.running_mean is None) == (not affine, not track_running_stats)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in ref.named_buffers()]
    train_both(ref, ours, shape, torch.float32, steps=5, seed=0)
    ref.eval(), ours.eval()  # without running statistics, eval mode uses the batch's
    x, dout = torch.randn(shape) * 2 - 1, torch.randn(shape)
    for got, want in zip(step(ours, x, dout), step(ref, x, dout)):
        assert_close(got, want)


def test_bias_false_matches_torch():
    ref, ours = twins("BatchNorm1d", bias=False)
    assert ours.bias is None and list(ours.state_dict()) == list(ref.state_dict())
    train_both(ref, ours, (8, 5), torch.float32, steps=3, seed=0)


@pytest.mark.parametrize("name, shape", CASES, ids=IDS)
def test_running_var_is_unbiased_and_momentum_weights_the_new_batch(name, shape):
    x = torch.randn(shape, dtype=torch.float64) * 2 + 3
    dims = [0, *range(2, x.ndim)]
    layer = getattr(cnn, name)(5, momentum=0.25, dtype=torch.float64)
    layer(x)
    assert_close(layer.running_mean, 0.75 * 0.0 + 0.25 * x.mean(dim=dims))
    assert_close(layer.running_var, 0.75 * 1.0 + 0.25 * x.var(dim=dims, correction=1))
    # ... while the output itself uses the biased variance
    y = layer.train()(x)
    z_norm = (x - x.mean(dim=dims, keepdim=True)) / torch.sqrt(
        x.var(dim=dims, correction=0, keepdim=True) + layer.eps
    )
    assert_close(y, z_norm)


def test_momentum_none_is_the_plain_mean_of_batch_statistics():
    layer = cnn.BatchNorm1d(3, momentum=None, dtype=torch.float64)
    batches = [torch.randn(10, 3, dtype=torch.float64) * (k + 1) + k for k in range(7)]
    for x in batches:
        layer(x)
    assert_close(layer.running_mean, torch.stack([x.mean(0) for x in batches]).mean(0))
    assert_close(layer.running_var, torch.stack([x.var(0) for x in batches]).mean(0))
    assert int(layer.num_batches_tracked) == 7


def test_running_statistics_are_updated_in_place():
    layer = cnn.BatchNorm2d(5)
    buffers = [layer.running_mean, layer.running_var, layer.num_batches_tracked]
    pointers = [b.data_ptr() for b in buffers]
    layer(torch.randn(4, 5, 3, 3) + 2)
    assert [layer.running_mean, layer.running_var, layer.num_batches_tracked] == buffers
    assert [b.data_ptr() for b in buffers] == pointers
    assert not layer.running_mean.requires_grad and layer.running_mean.grad_fn is None
    assert layer.running_mean.abs().min() > 0 and int(layer.num_batches_tracked) == 1


def test_uses_no_torch_batch_norm_inside(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("course_lib.nn must not call torch's batch norm")

    for owner, attr in [
        (torch.nn.functional, "batch_norm"),
        (torch, "batch_norm"),
        (torch, "native_batch_norm"),
    ]:
        monkeypatch.setattr(owner, attr, forbidden)
    layer = cnn.BatchNorm2d(5)
    layer(torch.randn(4, 5, 3, 3)).sum().backward()
    layer.eval()(torch.randn(4, 5, 3, 3))


def test_half_precision_input_meets_float32_parameters_like_torch():
    ref, ours = twins("BatchNorm2d")
    x = torch.randn(6, 5, 4, 4).half()
    y_ref, y_ours = ref(x), ours(x)
    assert y_ours.dtype == torch.float16
    assert_close(y_ours, y_ref, rtol=2e-3, atol=2e-3)
    assert_same_state(ref, ours)


def test_empty_batch_behaves_like_torch():
    ref, ours = twins("BatchNorm1d")
    x = torch.randn(0, 5)
    assert ours(x).shape == (0, 5) == ref(x).shape
    assert_same_state(ref, ours)  # counter incremented, statistics untouched, as in torch
    assert int(ours.num_batches_tracked) == 1 and torch.all(ours.running_var == 1)


# ---------------------------------------------------------------- state_dict, devices, dtypes


@pytest.mark.parametrize("track_running_stats", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_state_dict_keys_match_torch(affine, track_running_stats):
    kwargs = dict(affine=affine, track_running_stats=track_running_stats)
    for name in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"):
        ref, ours = twins(name, **kwargs)
        assert list(ours.state_dict()) == list(ref.state_dict())
        assert repr(ours) == repr(ref)


def test_state_dict_round_trip_ours_torch_ours():
    ours = cnn.BatchNorm2d(5)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2.0), ours.bias.uniform_(-1.0, 1.0)
    for _ in range(3):
        ours(torch.randn(4, 5, 3, 3) * 2 + 1)

    ref = torch.nn.BatchNorm2d(5)
    ref.load_state_dict(ours.state_dict(), strict=True)
    back = cnn.BatchNorm2d(5)
    back.load_state_dict(ref.state_dict(), strict=True)
    assert_same_state(ours, back)
    assert int(back.num_batches_tracked) == 3

    x = torch.randn(4, 5, 3, 3)
    assert_close(back.eval()(x), ref.eval()(x))


def test_loads_an_old_state_dict_without_num_batches_tracked_like_torch():
    sd = cnn.BatchNorm1d(5).state_dict()
    del sd["num_batches_tracked"]
    sd._metadata[""]["version"] = 1  # saved before num_batches_tracked existed
    for layer in (cnn.BatchNorm1d(5), torch.nn.BatchNorm1d(5)):
        layer.num_batches_tracked.fill_(4)
        layer.load_state_dict(sd, strict=True)  # would fail on a missing key without the fix
        assert int(layer.num_batches_tracked) == 4


def test_to_float64_converts_buffers_and_parameters():
    layer = cnn.BatchNorm1d(5)
    layer(torch.randn(8, 5))
    layer.to(torch.float64)
    assert layer.weight.dtype == layer.running_mean.dtype == layer.running_var.dtype == torch.float64
    assert layer.num_batches_tracked.dtype == torch.long  # integer buffers keep their dtype
    assert layer(torch.randn(8, 5, dtype=torch.float64)).dtype == torch.float64
    assert int(layer.num_batches_tracked) == 2


def test_constructor_arguments_and_reset():
    layer = cnn.BatchNorm1d(4, eps=1e-3, momentum=0.3, dtype=torch.float64)
    assert (layer.num_features, layer.eps, layer.momentum) == (4, 1e-3, 0.3)
    assert layer.weight.dtype == torch.float64 and layer.weight.shape == (4,)
    layer(torch.randn(6, 4, dtype=torch.float64) + 5)
    with torch.no_grad():
        layer.weight.fill_(3.0)
    layer.reset_parameters()
    assert torch.all(layer.weight == 1) and torch.all(layer.bias == 0)
    assert torch.all(layer.running_mean == 0) and torch.all(layer.running_var == 1)
    assert int(layer.num_batches_tracked) == 0


# ---------------------------------------------------------------- autograd


@pytest.mark.parametrize("name, shape", CASES[:3], ids=IDS[:3])
def test_gradcheck_in_training_mode(name, shape):
    layer = getattr(cnn, name)(shape[1], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()
    weight = (torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    bias = torch.randn(shape[1], generator=g, dtype=torch.float64).requires_grad_()

    def f(x, weight, bias):
        return torch.func.functional_call(layer, {"weight": weight, "bias": bias}, (x,))

    assert torch.autograd.gradcheck(f, (x, weight, bias))


# ---------------------------------------------------------------- the swap


def mlp(bn_class, seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(10, 32), bn_class(32), torch.nn.ReLU(), torch.nn.Linear(32, 3)
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_swapping_torch_batchnorm_for_ours_changes_nothing(seed):
    g = torch.Generator().manual_seed(1000 + seed)
    xs = torch.randn(30, 64, 10, generator=g) * 2 + 0.5
    ys = torch.randint(0, 3, (30, 64), generator=g)
    models = {"torch": mlp(torch.nn.BatchNorm1d, seed), "ours": mlp(cnn.BatchNorm1d, seed)}
    assert_same_state(*models.values())  # same start
    for model in models.values():
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for x, y in zip(xs, ys):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    ref, ours = models.values()
    assert int(ours[1].num_batches_tracked) == 30
    assert_same_state(ref, ours)  # weights, gamma, beta, running statistics
    assert not torch.equal(ours[1].running_mean, torch.zeros(32))  # it did train
    x_test = torch.randn(100, 10, generator=g)
    assert_close(ours.eval()(x_test), ref.eval()(x_test))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "name, bad_shape, message",
    [
        ("BatchNorm1d", (4,), r"expected 2D or 3D input \(got 1D input\)"),
        ("BatchNorm1d", (4, 5, 3, 3), r"expected 2D or 3D input \(got 4D input\).*BatchNorm2d"),
        ("BatchNorm2d", (4, 5, 3), r"expected 4D input \(got 3D input\).*BatchNorm1d"),
        ("BatchNorm2d", (4, 5), r"expected 4D input \(got 2D input\)"),
        ("BatchNorm3d", (4, 5, 3, 3), r"expected 5D input \(got 4D input\)"),
    ],
)
def test_wrong_number_of_dimensions(name, bad_shape, message):
    ref, ours = twins(name)
    x = torch.randn(bad_shape)
    with pytest.raises(ValueError, match=message.split(r"\)")[0]):
        ref(x)  # torch says the same first words
    with pytest.raises(ValueError, match=message):
        ours(x)


@pytest.mark.parametrize("train", [True, False])
def test_wrong_number_of_channels(train):
    layer = cnn.BatchNorm2d(5).train(train)
    pattern = r"expected input with num_features=5 channels in dim 1 \(got 3 channels.*BatchNorm2d\(3\)"
    with pytest.raises(ValueError, match=pattern):
        layer(torch.randn(4, 3, 2, 2))


def test_layer_without_per_channel_tensors_takes_any_channel_count_like_torch():
    kwargs = dict(affine=False, track_running_stats=False)
    ref, ours = twins("BatchNorm1d", **kwargs)
    x = torch.randn(8, 7)
    assert_close(ours(x), ref(x))


@pytest.mark.parametrize("shape", [(1, 5), (1, 5, 1), (1, 5, 1, 1)])
def test_batch_of_one_value_per_channel_fails_in_training(shape):
    name = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d"}[len(shape)]
    ref, ours = twins(name)
    x = torch.randn(shape)
    torch_words = r"Expected more than 1 value per channel when training, got input size"
    with pytest.raises(ValueError, match=torch_words):
        ref(x)
    with pytest.raises(ValueError, match=torch_words + r".*batch of at least 2.*eval mode"):
        ours(x)
    # without running statistics, eval mode needs batch statistics too, so it fails as well
    ours_untracked = getattr(cnn, name)(5, track_running_stats=False).eval()
    with pytest.raises(ValueError, match=torch_words):
        ours_untracked(x)


def test_batch_of_one_works_in_eval_mode():
    ref, ours = twins("BatchNorm1d")
    train_both(ref, ours, (16, 5), torch.float32, steps=3, seed=0)
    ref.eval(), ours.eval()
    x = torch.randn(1, 5)
    assert_close(ours(x), ref(x))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_fails_in_training(bad):
    layer = cnn.BatchNorm2d(5)
    x = torch.randn(4, 5, 3, 3)
    x[2, 3, 1, 0] = bad
    pattern = r"x contains 1 non-finite value .* in channel \[3\], the first at index \(2, 3, 1, 0\).*torch.isfinite"
    with pytest.raises(ValueError, match=pattern):
        layer(x)
    assert torch.all(layer.running_mean == 0) and torch.all(layer.running_var == 1)


def test_non_finite_input_passes_through_in_eval_mode_like_torch():
    ref, ours = twins("BatchNorm1d")
    ref.eval(), ours.eval()
    x = torch.randn(4, 5)
    x[0, 1] = float("nan")
    assert_close(ours(x), ref(x), equal_nan=True)


def test_wrong_dtypes():
    layer = cnn.BatchNorm1d(5)
    with pytest.raises(TypeError, match=r"expected input of dtype torch.float32 .* \(got torch.float64\)"):
        layer(torch.randn(4, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"expected a floating point input, got torch.int64.*x.float\(\)"):
        layer(torch.ones(4, 5, dtype=torch.long))


def test_eps_must_be_positive_in_training():
    with pytest.raises(ValueError, match=r"eps must be positive during training, but got 0"):
        cnn.BatchNorm1d(5, eps=0.0)(torch.randn(4, 5))


def test_batch_norm_function_needs_running_statistics_outside_training():
    with pytest.raises(ValueError, match=r"running_mean and running_var must be tensors when training=False"):
        cnn.batch_norm(torch.randn(4, 5), None, None, training=False)


# ---------------------------------------------------------------- robustness


def test_functional_refuses_0d_and_1d_input_like_torch():
    for x in (torch.tensor(1.0), torch.randn(4)):
        with pytest.raises(ValueError, match=rf"expected 2D or higher input .*\(got {x.dim()}D input\)"):
            cnn.batch_norm(x, None, None, training=True)


@pytest.mark.parametrize("name", ["weight", "bias", "running_mean", "running_var"])
def test_functional_wrong_size_says_so_in_torchs_words_and_changes_nothing(name):
    args = dict(running_mean=torch.zeros(4), running_var=torch.ones(4),
                weight=torch.ones(4), bias=torch.zeros(4))
    args[name] = torch.ones(5)
    before = {k: v.clone() for k, v in args.items()}
    with pytest.raises(RuntimeError, match=rf"{name} should contain 4 elements not 5"):
        torch.nn.functional.batch_norm(torch.randn(3, 4), training=True, **args)
    with pytest.raises(ValueError, match=rf"^{name} should contain 4 elements not 5.*shape \(4,\)"):
        cnn.batch_norm(torch.randn(3, 4), training=True, **args)
    for k, v in args.items():
        assert torch.equal(v, before[k]), f"{k} changed although the call was refused"


@pytest.mark.parametrize("eps, error", [(None, TypeError), ("1e-5", TypeError),
                                         (float("nan"), ValueError), (float("inf"), ValueError),
                                         (-1.0, ValueError)])
@pytest.mark.parametrize("training", [True, False])
def test_eps_must_be_a_finite_number(eps, error, training):
    layer = cnn.BatchNorm1d(3, eps=eps)
    layer.train(training)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(error, match="eps"):
        layer(torch.randn(4, 3))
    for k, v in layer.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("dtype, big", [(torch.float32, 1e20), (torch.float64, 1e200)])
def test_overflowing_variance_is_refused_not_turned_into_beta(dtype, big):
    layer = cnn.BatchNorm1d(2, dtype=dtype)
    x = torch.tensor([[big, 1.0], [-big, 2.0], [big, 3.0]], dtype=dtype)
    with pytest.raises(ValueError, match=rf"mean or variance of x overflowed {dtype}.*Rescale"):
        layer(x)
    assert int(layer.num_batches_tracked) == 0 and torch.all(layer.running_var == 1)


def test_a_refused_batch_is_not_counted_with_momentum_none():
    layer = cnn.BatchNorm1d(3, momentum=None)
    layer(torch.randn(8, 3))
    mean = layer.running_mean.clone()
    x = torch.randn(8, 3)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        layer(x)
    assert int(layer.num_batches_tracked) == 1 and torch.equal(layer.running_mean, mean)
    second = torch.randn(8, 3)
    layer(second)  # the next batch gets weight 1/2, not 1/3
    assert int(layer.num_batches_tracked) == 2
    assert_close(layer.running_mean, (mean + second.mean(0)) / 2)


def test_half_precision_layer_computes_statistics_in_float32_like_torch():
    """(x - mean)**2 of values near 300 overflows float16 (max 65504): torch and we compute
    the statistics in float32, so the output is right to float16's rounding."""
    ref, ours = twins("BatchNorm1d", num_features=3)
    ref.half(), ours.half()
    x = (torch.randn(64, 3, generator=torch.Generator().manual_seed(0)) * 300).half()
    y_ref, y_ours = ref(x), ours(x)
    assert y_ours.dtype == torch.float16
    assert (y_ours.float() - y_ref.float()).abs().max() < 1e-2
    assert_same_state(ref, ours)
    ref.eval(), ours.eval()
    assert (ours(x).float() - ref(x).float()).abs().max() < 1e-2


# ---------------------------------------------------------------- properties (hypothesis)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
_DIMS = {"BatchNorm1d": (2, 3), "BatchNorm2d": (4,), "BatchNorm3d": (5,)}


@st.composite
def layer_configs(draw):
    name = draw(st.sampled_from(sorted(_DIMS)))
    ndim = draw(st.sampled_from(_DIMS[name]))
    c = draw(st.integers(1, 4))
    n = draw(st.integers(2, 5))
    shape = (n, c) + tuple(draw(st.integers(1, 3)) for _ in range(ndim - 2))
    kwargs = dict(
        momentum=draw(st.sampled_from([0.1, 0.5, 1.0, None])),
        affine=draw(st.booleans()),
        track_running_stats=draw(st.booleans()),
        eps=draw(st.sampled_from([1e-5, 1e-3, 0.5])),
        dtype=draw(st.sampled_from([torch.float32, torch.float64])),
    )
    return name, shape, kwargs, draw(st.integers(0, 2**16))


def _state(layer):
    return {k: v.clone() for k, v in layer.state_dict().items()}


@PROPERTY_SETTINGS
@given(config=layer_configs(), steps=st.integers(1, 3), train=st.lists(st.booleans(), min_size=3, max_size=3))
def test_valid_inputs_match_torch(config, steps, train):
    name, shape, kwargs, seed = config
    ref, ours = twins(name, num_features=shape[1], seed=seed, **kwargs)
    g = torch.Generator().manual_seed(seed)
    tol = dict(rtol=1e-4, atol=1e-4) if kwargs["dtype"] == torch.float32 else {}
    for k in range(steps):
        ref.train(train[k]), ours.train(train[k])
        x = torch.randn(shape, generator=g, dtype=kwargs["dtype"]) * 3 + 2
        dout = torch.randn(shape, generator=g, dtype=kwargs["dtype"])
        for got, want in zip(step(ours, x, dout), step(ref, x, dout)):
            assert_close(got, want, **tol)
        assert_same_state(ref, ours)


@st.composite
def refused_inputs(draw, shape, dtype):
    """A bad input for a layer that takes `shape`, and the error it must raise."""
    kind = draw(st.sampled_from(["nan", "inf", "channels", "ndim", "dtype", "int", "one value",
                                 "eps", "overflow"]))
    x = torch.randn(shape, dtype=dtype)
    eps = None
    if kind in ("nan", "inf"):
        index = tuple(draw(st.integers(0, s - 1)) for s in shape)
        x[index] = float(kind) * draw(st.sampled_from([1, -1]))
    elif kind == "channels":
        x = torch.randn((shape[0], shape[1] + 1) + shape[2:], dtype=dtype)
    elif kind == "ndim":
        x = torch.randn(shape[0], shape[1], *shape[2:], 2, 2, dtype=dtype)
    elif kind == "dtype":
        x = x.to(torch.float64 if dtype == torch.float32 else torch.float32)
    elif kind == "int":
        x = x.long()
    elif kind == "one value":
        x = torch.randn((1, shape[1]) + (1,) * (len(shape) - 2), dtype=dtype)
    elif kind == "eps":
        eps = draw(st.sampled_from([None, "1e-5", float("nan"), float("inf"), -1.0, 0.0]))
    elif kind == "overflow":
        big = 1e20 if dtype == torch.float32 else 1e200
        x[0, 0] = big
        x[1, 0] = -big
    return kind, x, eps


@PROPERTY_SETTINGS
@given(config=layer_configs(), data=st.data())
def test_a_refused_input_changes_no_state(config, data):
    name, shape, kwargs, seed = config
    if kwargs["dtype"] == torch.float64 and not kwargs["affine"] and not kwargs["track_running_stats"]:
        kwargs["dtype"] = torch.float32  # a layer with no tensors has no dtype to refuse
    _, layer = twins(name, num_features=shape[1], seed=seed, **kwargs)
    g = torch.Generator().manual_seed(seed)
    layer(torch.randn(shape, generator=g, dtype=kwargs["dtype"]) + 1)  # some state
    x0 = torch.randn(shape, generator=g, dtype=kwargs["dtype"], requires_grad=True)
    (layer(x0) * torch.randn(shape, generator=g, dtype=kwargs["dtype"])).sum().backward()
    kind, x, eps = data.draw(refused_inputs(shape, kwargs["dtype"]))
    has_tensors = kwargs["affine"] or kwargs["track_running_stats"]
    if kind in ("channels", "dtype") and not has_tensors:
        return  # like torch, a layer without per-channel tensors takes any C and dtype
    if kind == "eps":
        layer.eps = eps
        if eps == 0.0:
            layer.train()  # eps = 0 is only refused in training, as in torch
    if kind in ("nan", "inf", "one value", "overflow"):
        layer.train()  # eval mode passes them through (or normalizes one example), like torch
    state, grads = _state(layer), [p.grad.clone() for p in layer.parameters()]
    with pytest.raises((ValueError, TypeError)):
        layer(x)
    after = _state(layer)
    assert list(after) == list(state)
    for k in state:
        assert torch.equal(after[k], state[k]), f"{kind}: {k} changed"
    assert all(torch.equal(p.grad, g0) for p, g0 in zip(layer.parameters(), grads)), kind


@PROPERTY_SETTINGS
@given(config=layer_configs(), bad=st.sampled_from(["weight", "bias", "running_mean", "running_var", "ndim", "eps"]))
def test_functional_refused_input_changes_no_buffer(config, bad):
    _, shape, kwargs, seed = config
    dtype, c = kwargs["dtype"], shape[1]
    args = dict(running_mean=torch.zeros(c, dtype=dtype) + 0.5,
                running_var=torch.ones(c, dtype=dtype) * 2,
                weight=torch.ones(c, dtype=dtype), bias=torch.zeros(c, dtype=dtype))
    x, eps = torch.randn(shape, dtype=dtype), 1e-5
    if bad in args:
        args[bad] = torch.ones(c + 1, dtype=dtype)
    elif bad == "ndim":
        x = x[0, 0].reshape(-1)[:1].reshape(())
    else:
        eps = float("nan")
    before = {k: v.clone() for k, v in args.items()}
    with pytest.raises(ValueError):
        cnn.batch_norm(x, training=True, momentum=0.5, eps=eps, **args)
    for k, v in args.items():
        assert torch.equal(v, before[k]), k
