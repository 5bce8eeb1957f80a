"""The data-parallel training script, alone and under torchrun with 2 gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib.experiments.lab import data_parallel as script
from course_lib.distributed import free_port

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).parent / "torchrun"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to python")
def test_torchrun_two_processes_sync_bn(tmp_path):
    out = tmp_path / "result.json"
    cmd = [str(TORCHRUN), "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "course_lib.experiments.lab.data_parallel",
           "--bn", "sync", "--batch-size", "8", "--steps", "150", "--json", str(out)]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["world_size"] == 2 and result["global_batch"] == 16
    assert result["params_equal_on_all_ranks"], "DDP keeps every copy of the model identical"
    assert result["running_stats_equal_on_all_ranks"], "SyncBN's statistics are global"
    assert result["test_accuracy"] > 0.85
    assert "2 process(es), --bn sync" in run.stdout
    assert "Warning" not in run.stderr


def test_one_process_without_torchrun(tmp_path, capsys, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "result.json"
    assert script.main(["--bn", "local", "--steps", "60", "--batch-size", "16",
                        "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["world_size"] == 1 and result["bn"] == "local"
    assert result["test_accuracy"] > 0.7
    assert "1 process(es), --bn local" in capsys.readouterr().out
    import torch.distributed as dist
    assert not dist.is_initialized(), "the script must leave no process group behind"


@pytest.mark.parametrize("argv,world,match", [
    (["--bn", "local", "--batch-size", "1"], 4, "batch of one"),
    (["--bn", "sync", "--batch-size", "1"], 1, "batch of one"),
    (["--backend", "nccl"], 2, "nccl"),
    (["--backend", "carrier-pigeon"], 1, "unknown --backend"),
    (["--steps", "0"], 1, "at least 1"),
])
def test_bad_settings_give_a_clear_error(argv, world, match):
    with pytest.raises(SystemExit, match=match):
        script.check_settings(script.parse_args(argv), world)


def test_good_settings_pass():
    script.check_settings(script.parse_args(["--bn", "sync", "--batch-size", "1"]), 2)
    script.check_settings(script.parse_args(["--bn", "local", "--batch-size", "2"]), 4)


def test_build_model_swaps_batch_norm_for_sync():
    names = {bn: {type(m).__name__ for m in script.build_model(bn, 0).modules()}
             for bn in script.BN_CHOICES}
    assert "SyncBatchNorm" in names["sync"] and "BatchNorm1d" not in names["sync"]
    assert "BatchNorm1d" in names["local"] and "SyncBatchNorm" not in names["local"]
    assert not any("Norm" in n for n in names["none"])
