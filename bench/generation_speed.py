"""Worker for the generation_batching figure: core/generation.py batched vs one-by-one, same prompts, same process.

    python -m bench.generation_speed --project WS --profile tiny --prompts 8 --max-new-tokens 16 \
        --batch-size 8 --reps 3 --result result.json

Prompts are the first N of the curated eval_math split (what `evaluate` generates for). Tokens are
each row's new token ids up to and including its first end-of-turn token, read from what
model.generate returned (an instance-level wrapper counts them; generation.py is unchanged and
only returns text). Rows of a batch that stop early cost compute until the longest one ends but
add no tokens, so batched tokens/s is what evaluation really gets. The order of the two modes alternates per
repetition, so a drift in machine load does not favour one of them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", required=True)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--prompts", type=int, required=True)
    ap.add_argument("--max-new-tokens", type=int, required=True)
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--result", required=True)
    args = ap.parse_args()

    import torch

    from core import models, training
    from core.config import load_params
    from core.generation import generate

    project = Path(args.project)
    p = load_params(project / "params.yaml", args.profile)
    base = models.base_model(p.model, p.pipeline.seed)
    tok = training.load_tokenizer(base)
    model = training.load_policy(base, p.model)
    rows = training.load_rows(project / "data" / "curated" / "eval_math.jsonl", args.prompts)
    prompts = list(rows["prompt"])
    if len(prompts) < args.prompts:
        raise SystemExit(f"eval_math.jsonl has {len(prompts)} prompts, fewer than --prompts {args.prompts}")
    counter = count_generated(model, tok.eos_token_id)
    generate(model, tok, prompts[:1], 4, 1)  # first-call costs (allocator, kernels) paid before timing

    def measure(batch_size: int) -> dict:
        counter.clear()
        started = time.perf_counter()
        generate(model, tok, prompts, args.max_new_tokens, batch_size)
        seconds = time.perf_counter() - started
        tokens = sum(counter)
        # Token slots the batches computed: every row runs until the batch's longest row ends.
        batches = [counter[i : i + batch_size] for i in range(0, len(counter), batch_size)]
        slots = sum(len(b) * max(b) for b in batches)
        return {"batch_size": batch_size, "seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds,
                "prompts_per_s": len(prompts) / seconds, "slot_use": tokens / slots}

    reps = []
    for rep in range(args.reps):
        sizes = (args.batch_size, 1) if rep % 2 == 0 else (1, args.batch_size)
        done = {bs: measure(bs) for bs in sizes}
        reps.append({"batched": done[args.batch_size], "one_by_one": done[1]})
    Path(args.result).write_text(json.dumps({"model": base, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
                                             "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
                                             "reps": reps}))


def count_generated(model, eos_id: int) -> list[int]:
    """Wrap this model instance's generate() to append each row's generated token count (up to and
    including the first end-of-turn token; after it come only pad ids) to the returned list."""
    counts: list[int] = []
    original = model.generate

    def generate(**kwargs):
        out = original(**kwargs)
        for row in out[:, kwargs["input_ids"].shape[1]:].tolist():
            counts.append(row.index(eos_id) + 1 if eos_id in row else len(row))
        return out

    model.generate = generate
    return counts


if __name__ == "__main__":
    main()
