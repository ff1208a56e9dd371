"""Sizes of a benchmark run (Plan) and what its figures share while it runs (Context): the
workspace, a scratch dir, worker processes, base checkpoints and the full iterations."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench import iteration_speed
from bench.iteration_speed import BenchError
from bench.workspace import Workspace


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run. quick: the tiny profile, a smoke test in minutes on a busy
    machine; full: the default profile (SmolLM2-135M), about an hour and a half on 2 cores."""

    mode: str
    profile: str  # every figure but overhead
    overhead_profiles: tuple[str, ...]  # overhead
    reps: int  # repetitions of every figure but iteration_time and overhead, and of the tiny-profile iterations
    iteration_reps: int  # repetitions of a non-tiny full iteration (~35 min each on the default profile)
    sft_steps: int | None  # sft_vs_trl; None: the profile's sft.max_steps
    packing_steps: int  # packing
    gen_prompts: int  # generation_engine, generation_batching
    gen_max_new_tokens: int
    matmul_sizes: str  # flops
    matmul_seconds: float
    timeout_s: int  # one process (an iteration, a worker)


QUICK = Plan("quick", "tiny", ("tiny",), reps=1, iteration_reps=1, sft_steps=None, packing_steps=4, gen_prompts=8,
             gen_max_new_tokens=16, matmul_sizes="256,512,1024", matmul_seconds=0.3, timeout_s=1200)
# sft_steps 30: half the default profile's 60; sft_vs_trl runs 2 x reps SFTs back to back.
FULL = Plan("full", "default", ("tiny", "default"), reps=3, iteration_reps=1, sft_steps=30, packing_steps=10,
            gen_prompts=40, gen_max_new_tokens=128, matmul_sizes="1024,2048,4096", matmul_seconds=2.0, timeout_s=3600)


@dataclass
class Context:
    plan: Plan
    ws: Workspace
    scratch: Path
    iterations: dict[str, list[dict]] = field(default_factory=dict)  # profile -> full-iteration records
    iteration_ws: dict[str, Workspace] = field(default_factory=dict)  # profile -> workspace of its last one
    ours_sft: list[dict] = field(default_factory=list)  # sft_vs_trl's runs of our stage (flops reads them)
    base: dict[str, str] = field(default_factory=dict)  # profile -> base checkpoint dir
    cache: dict[str, dict] = field(default_factory=dict)  # one worker's result shared by several figures
    _n: int = 0

    def params(self, profile: str, sets: list[str] | tuple[str, ...] = ()):
        from core.config import load_params

        return load_params(self.ws.root / "params.yaml", profile, list(sets))

    def worker(self, module: str, *args: str) -> dict:
        """Run bench/<module>.py in its own process in the workspace; its JSON result."""
        self._n += 1
        result = self.scratch / f"{self._n:03d}-{module}.json"
        proc = subprocess.run([sys.executable, "-m", f"bench.{module}", *args, "--result", str(result)],
                              cwd=self.ws.root, env=self.ws.env(), capture_output=True, text=True,
                              timeout=self.plan.timeout_s)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            raise BenchError(f"bench.{module} {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
        return json.loads(result.read_text())

    def out_dir(self, name: str) -> Path:
        self._n += 1
        return self.scratch / f"{self._n:03d}-{name}"

    def base_checkpoint(self, profile: str) -> str:
        """The profile's base checkpoint, converted/built before any timer starts (one-time cost)."""
        if profile not in self.base:
            code = ("import sys; from core import models; from core.config import load_params; "
                    "p = load_params('params.yaml', sys.argv[1]); print(models.base_model(p.model, p.pipeline.seed))")
            proc = subprocess.run([sys.executable, "-c", code, profile], cwd=self.ws.root, env=self.ws.env(),
                                  capture_output=True, text=True, timeout=self.plan.timeout_s)
            if proc.returncode != 0:
                raise BenchError(f"base checkpoint of profile '{profile}' failed:\n{proc.stderr[-3000:]}")
            self.base[profile] = proc.stdout.strip().splitlines()[-1]
        return self.base[profile]

    def full_iterations(self, profile: str) -> list[dict]:
        """Full iterations of `profile`, each in a fresh runs dir (nothing reused); run once per
        bench run and shared by iteration_time, overhead and rerun."""
        if profile not in self.iterations:
            self.base_checkpoint(profile)
            reps = self.plan.reps if profile == "tiny" and self.plan.mode == "full" else self.plan.iteration_reps
            records = []
            for rep in range(reps):
                ws = self.ws.with_runs(f"runs-{profile}-{rep}")
                records.append(iteration_speed.run_iteration(ws, profile, self.plan.timeout_s))
                self.iteration_ws[profile] = ws
            self.iterations[profile] = records
        return self.iterations[profile]
