"""What the numbers were measured on: CPU, memory, load, library versions, code revision."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "transformers", "trl", "accelerate", "datasets", "mlflow", "prefect", "dvc", "great_expectations",
            "safetensors", "tokenizers")
# CPU features that decide fp32 / bf16 matmul speed (AMX and AVX-512 BF16 run bf16 natively).
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def _cpuinfo() -> dict:
    info: dict = {}
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and "model" not in info:
            info["model"] = value.strip()
        if key == "flags" and "flags" not in info:
            present = set(value.split())
            info["flags"] = [f for f in FLAGS if f in present]
    return info


def _memory_gib() -> float | None:
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return None


def load() -> list[float]:
    """1, 5 and 15 min load averages: how busy the machine was (other users' jobs included)."""
    return [round(x, 2) for x in os.getloadavg()]


def describe() -> dict:
    cpu = _cpuinfo()
    return {
        "cpu": cpu.get("model", platform.processor()),
        "cpu_flags": cpu.get("flags", []),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(_memory_gib() or 0, 1),
        "gpu": _gpu(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "load_at_start": load(),
    }


def _gpu() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git(root: Path) -> dict:
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                           text=True).stdout.strip()
    return {"sha": sha or "unknown", "dirty": bool(dirty), "changed_files": len(dirty.splitlines()) if dirty else 0}
