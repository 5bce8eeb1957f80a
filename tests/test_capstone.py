"""course_lib.experiments.capstone: the mechanics of chapter 9's experiment (the claim itself
runs in tests/test_claims.py)."""

import numpy as np
import torch

from course_lib.experiments.capstone import digits_arrays, to_torch, train_numpy_net
from course_lib.experiments.lab.data import load_digits_split
from course_lib.numpy_net import init_params, init_running

DATA = load_digits_split(seed=0)


def test_digits_arrays_are_numpy_float64():
    X_train, y_train, X_test, y_test = digits_arrays(DATA)
    assert X_train.dtype == np.float64 and X_test.dtype == np.float64
    assert y_train.shape == (DATA.n_train,)
    assert y_test.dtype == np.int64


def test_a_short_run_records_every_step_and_evaluates():
    run = train_numpy_net(DATA, [64, 20, 10], bn=True, lr=0.5, epochs=1, seed=1)
    assert len(run["losses"]) == DATA.n_train // 64
    assert 0.0 <= run["test accuracy"] <= 1.0
    assert not np.allclose(run["running"]["mean1"], 0.0)


def test_a_diverging_run_stops_without_a_warning(recwarn):
    run = train_numpy_net(DATA, [64, 20, 10], bn=False, lr=1e6, epochs=3, seed=1)
    assert not np.isfinite(run["losses"][-1])
    assert len(run["losses"]) < 3 * (DATA.n_train // 64)   # stopped before the 3rd epoch
    assert len(recwarn) == 0


def test_to_torch_loads_every_parameter_and_buffer():
    params = init_params([5, 4, 3], bn=True, seed=0)
    running = {k: v + 0.5 for k, v in init_running(params).items()}
    model = to_torch(params, running, bn_impl="course_lib")
    state = model.state_dict()
    assert torch.equal(state["linear1.weight"], torch.from_numpy(params["W1"]))
    assert torch.equal(state["bn1.running_var"], torch.from_numpy(running["var1"]))
    assert torch.equal(state["output.bias"], torch.from_numpy(params["b2"]))
    assert model.linear1.bias is None
    assert state["output.weight"].dtype == torch.float64
