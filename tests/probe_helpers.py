"""Models and state snapshots shared by the probe tests (test_model_state, test_percentiles,
test_landscape, test_gradient_ics)."""

from __future__ import annotations

import torch
from torch import nn

from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.lab.models import make_mlp
from course_lib.experiments.probes.noisy_bn import noisy_bn
from course_lib.experiments.lab.training import train


def small_digits():
    return load_digits_split(seed=0, n_train=300)


def model_of(kind: str, seed: int = 0) -> nn.Sequential:
    if kind == "no BN":
        return make_mlp(64, [30, 30, 30], 10, seed=seed)
    if kind == "BN":
        return make_mlp(64, [30, 30, 30], 10, bn="before", seed=seed)
    if kind == "noisy BN":
        return make_mlp(64, [30, 30, 30], 10, bn="before", bn_impl=noisy_bn(seed=seed), seed=seed)
    if kind == "dropout":
        return make_mlp(64, [30, 30, 30], 10, bn="before", dropout=0.3, seed=seed)
    raise ValueError(kind)


KINDS = ["no BN", "BN", "noisy BN", "dropout"]


def trained(kind, data, steps=30):
    model = model_of(kind)
    train(model, data, steps=steps, lr=0.5, eval_every=steps)
    model.linear1.weight.grad = torch.randn_like(model.linear1.weight)  # a stale gradient
    return model


def state(model):
    """Everything a probe must leave alone, as plain copies."""
    gens = {}
    for m in model.modules():
        for v in vars(m).values():
            if isinstance(v, torch.Generator):
                gens[id(v)] = v.get_state().clone()
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "modes": [m.training for m in model.modules()],
        "generators": gens,
        "global_rng": torch.random.get_rng_state(),
    }


def assert_same_state(before, after):
    assert all(torch.equal(a, b) for a, b in zip(before["params"], after["params"]))
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(before["buffers"], after["buffers"]))
    assert before["modes"] == after["modes"]
    assert before["generators"].keys() == after["generators"].keys()
    assert all(torch.equal(before["generators"][k], after["generators"][k]) for k in before["generators"])
    assert torch.equal(before["global_rng"], after["global_rng"])
