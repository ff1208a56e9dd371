"""Worker for the flops figure: this machine's measured dense matmul peak (torch.matmul), fp32 and bf16.

    python -m bench.matmul_peak --sizes 512,1024,2048 --min-seconds 1.0 --result result.json

Square n x n @ n x n products cost 2 n^3 FLOPs. Each size is warmed up once, then repeated until
`min-seconds` have passed; the peak is the best rate over sizes. It runs with torch's default
thread count, the same as the training workers, so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def rate(n: int, dtype, min_seconds: float) -> dict:
    import torch

    a = torch.randn(n, n, dtype=torch.float32).to(dtype)
    b = torch.randn(n, n, dtype=torch.float32).to(dtype)
    torch.matmul(a, b)  # warm-up: allocation and kernel selection are not part of the peak
    calls = 0
    started = time.perf_counter()
    while True:
        torch.matmul(a, b)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            break
    return {"n": n, "calls": calls, "seconds": elapsed, "flops_per_s": 2 * n**3 * calls / elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="512,1024,2048")
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--result", required=True)
    args = ap.parse_args()

    import torch

    sizes = [int(s) for s in args.sizes.split(",")]
    out = {"torch_threads": torch.get_num_threads(), "dtypes": {}}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        per_size = [rate(n, dtype, args.min_seconds) for n in sizes]
        out["dtypes"][name] = {"peak_flops_per_s": max(r["flops_per_s"] for r in per_size), "sizes": per_size}
    Path(args.result).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
