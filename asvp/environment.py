"""What this process computes with: the CPU and the kernel level torch uses, thread counts, GPU,
CUDA / cuDNN / driver versions, the deterministic settings in force, the host and SLURM job.

Why (docs/design.md, "Numbers that mean one thing"): floating-point kernels differ between CPU
models, kernel levels (AVX2 vs AVX-512) and GPUs, and one different pick changes every later
round, so the same run key can give different numbers on different hardware. Each run records
what made it, so that a reader can tell a difference of method from a difference of machine.
Nothing here changes a setting; it only reads them. The benchmark stores these values with the
run (:mod:`benchmark.tracking`); this module knows nothing of MLflow.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path

import torch

NONE = "none"
"""The value of a setting that is absent (no GPU, an unset variable, no SLURM job)."""

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Environment variables that set BLAS / OpenMP thread counts (and so the order of sums)."""

_DRIVER_TIMEOUT_S = 5.0


def compute_environment() -> dict[str, str]:
    """The hardware, kernels and settings this process computes with, every value a string
    (``"none"`` when absent), under fixed keys, so that a record of one attempt can replace
    another's key by key.

    Call it once the computation's settings are in force (threads, deterministic mode): the
    values are those of the moment of the call.
    """
    cuda = torch.cuda.is_available()
    cudnn = torch.backends.cudnn.version()  # None without cuDNN
    return {
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": str(torch.get_num_threads()),
        "interop_threads": str(torch.get_num_interop_threads()),
        **{name.lower(): os.environ.get(name, NONE) for name in THREAD_VARIABLES},
        "native_threads": native_thread_pools(),
        "gpu": _gpu_names() if cuda else NONE,
        "gpu_count": str(torch.cuda.device_count() if cuda else 0),
        "cuda": torch.version.cuda or NONE,
        "cudnn": str(cudnn) if cudnn else NONE,
        "driver": gpu_driver(),
        "deterministic": _flag(torch.are_deterministic_algorithms_enabled()),
        "cudnn_deterministic": _flag(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": _flag(torch.backends.cudnn.benchmark),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG", NONE),
        "host": socket.gethostname(),
        "slurm_job": slurm_job_id() or NONE,
        "slurm_node": os.environ.get("SLURMD_NODENAME", NONE),
    }


def native_thread_pools() -> str:
    """The thread count of each BLAS and OpenMP library loaded in this process, as threadpoolctl
    reads it (``openblas=1,openmp=1``; one entry per library kind, the largest count of its
    copies): what :func:`asvp.compute.compute_settings` capped, which the environment
    variables alone do not show. ``"none"`` without threadpoolctl or any such library."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # comes with scikit-learn
        return NONE
    pools: dict[str, int] = {}
    for pool in threadpool_info():
        kind = pool["internal_api"]
        pools[kind] = max(pools.get(kind, 0), int(pool["num_threads"]))
    return ",".join(f"{kind}={count}" for kind, count in sorted(pools.items())) or NONE


def hardware_label(env: dict[str, str]) -> str:
    """A short name of the hardware that made a run, to group runs by: the GPU model, count and
    CUDA version when the run had a GPU (``NVIDIA H100 80GB x1, CUDA 12.4``), else the CPU
    model and torch's kernel level (``AMD EPYC 7B13 (AVX2), cpu``). ``env`` is a
    :func:`compute_environment` result."""
    if env.get("gpu", NONE) != NONE:
        return f"{env['gpu']} x{env['gpu_count']}, CUDA {env['cuda']}"
    return f"{env['cpu_model']} ({env['cpu_capability']}), cpu"


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name from ``cpuinfo`` (Linux), else what :mod:`platform` knows."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or NONE


def gpu_driver() -> str:
    """The NVIDIA driver version ``nvidia-smi`` reports (``none`` without it, or if it fails
    or takes longer than a few seconds)."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return NONE
    try:
        out = subprocess.run(
            [command, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=_DRIVER_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return NONE
    versions = sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})
    return ", ".join(versions) or NONE


def slurm_job_id() -> str:
    """``<array job>_<task>`` inside a SLURM array task, the job id in a plain job, else ""."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID", "")


def _gpu_names() -> str:
    """The visible GPUs' model names (distinct, in device order)."""
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return " + ".join(dict.fromkeys(names)) or NONE


def _flag(value: bool) -> str:
    return "true" if value else "false"
