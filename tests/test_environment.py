"""What a process computes with (:mod:`asvp.environment`): every value a string under fixed
keys, read from the settings in force, and the hardware label runs are grouped by."""

import stat

import pytest
import torch

from asvp.environment import (
    NONE,
    compute_environment,
    cpu_model,
    gpu_driver,
    hardware_label,
    native_thread_pools,
    slurm_job_id,
)

KEYS = {
    "cpu_model",
    "cpu_capability",
    "torch_threads",
    "interop_threads",
    "omp_num_threads",
    "mkl_num_threads",
    "openblas_num_threads",
    "native_threads",
    "gpu",
    "gpu_count",
    "cuda",
    "cudnn",
    "driver",
    "deterministic",
    "cudnn_deterministic",
    "cudnn_benchmark",
    "cublas_workspace_config",
    "host",
    "slurm_job",
    "slurm_node",
}


def test_every_value_is_a_string_under_fixed_keys():
    env = compute_environment()
    assert set(env) == KEYS
    assert all(isinstance(value, str) and value for value in env.values())
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["interop_threads"] == str(torch.get_num_interop_threads())


def test_thread_counts_and_deterministic_settings_are_those_in_force(monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        env = compute_environment()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
    assert env["torch_threads"] == "1"
    assert env["omp_num_threads"] == "3" and env["mkl_num_threads"] == NONE
    assert env["deterministic"] == "true" and env["cublas_workspace_config"] == ":4096:8"
    assert compute_environment()["deterministic"] == "false"


def test_native_thread_pools_are_those_the_cell_capped():
    import numpy  # noqa: F401  (its BLAS is loaded, as in every cell)

    from asvp.compute import compute_settings
    from asvp.config import ComputeConfig

    before = native_thread_pools()
    with compute_settings(ComputeConfig(threads=1)):
        capped = compute_environment()["native_threads"]
    pools = dict(entry.split("=") for entry in capped.split(","))
    assert "openmp" in pools and set(pools.values()) == {"1"}
    assert native_thread_pools() == before  # restored after the cell


def test_slurm_job_and_node_come_from_the_job_environment(monkeypatch):
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID", "SLURMD_NODENAME"):
        monkeypatch.delenv(name, raising=False)
    assert slurm_job_id() == "" and compute_environment()["slurm_job"] == NONE
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURMD_NODENAME", "gpu-12")
    env = compute_environment()
    assert env["slurm_job"] == "77" and env["slurm_node"] == "gpu-12"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    assert compute_environment()["slurm_job"] == "70_4"


def test_cpu_model_is_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n")
    assert cpu_model(cpuinfo) == "AMD EPYC 7B13 64-Core Processor"
    assert cpu_model(tmp_path / "absent") != ""  # platform's answer, or "none"


def test_driver_version_comes_from_nvidia_smi_when_there_is_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_driver() == NONE
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 550.54.15\necho 550.54.15\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert gpu_driver() == "550.54.15"
    fake.write_text("#!/bin/sh\nexit 9\n")
    assert gpu_driver() == NONE


@pytest.mark.parametrize(
    ("changes", "label"),
    [
        ({}, "AMD EPYC 7B13 (AVX2), cpu"),
        (
            {"gpu": "NVIDIA H100 80GB HBM3", "gpu_count": "1", "cuda": "12.4"},
            "NVIDIA H100 80GB HBM3 x1, CUDA 12.4",
        ),
    ],
)
def test_hardware_label_names_the_gpu_when_there_is_one_else_the_cpu(changes, label):
    env = compute_environment() | {"cpu_model": "AMD EPYC 7B13", "cpu_capability": "AVX2"}
    env |= {"gpu": NONE, "gpu_count": "0"} | changes
    assert hardware_label(env) == label
