"""Worker for the generation figures: our evaluation path (core/generation.generate: batches of
prompts taken longest first) batched and one-by-one, and plain `transformers` `model.generate` on
batches of the prompts in their given order, same checkpoint, prompts and batch size, all in one
process.

    python -m bench.generation_speed --project WS --profile tiny --prompts 8 --max-new-tokens 16 \
        --batch-size 8 --reps 3 --result result.json

Prompts are the first N of the curated eval_math split (what `evaluate` generates for). Tokens are
each reply's new token ids up to and including its first end-of-turn token: read from what
`model.generate` returned (the worker wraps this model instance's generate to count; nothing else changes).
A batch's rows that stop early cost `model.generate` compute until the longest one ends but add no
tokens, so tokens/s is what evaluation really gets. The order of the modes rotates per repetition,
so a drift in machine load does not favour one of them. Agreement: the share of replies whose text
(and whose extracted final answer) is the same from both paths.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

MODES = ("engine", "one_by_one", "plain")


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

    from core import generation, models, training
    from core.config import load_params
    from evaluations.math_score import final_answer

    project = Path(args.project)
    p = load_params(project / "params.yaml", args.profile)
    base = models.base_model(p.model, p.pipeline.seed)
    tok = training.load_tokenizer(base)
    model = training.load_policy(base, p.model)
    rows = training.load_rows(project / "data" / "curated" / "eval_math.jsonl", args.prompts)
    prompts = list(rows["prompt"])
    if len(prompts) < args.prompts:
        raise SystemExit(f"eval_math.jsonl has {len(prompts)} prompts, fewer than --prompts {args.prompts}")
    counts = count_generated(model, tok.eos_token_id)
    generation.generate(model, tok, prompts[:1], 4, 1)  # first-call costs (allocator, kernels) paid before timing

    replies: dict[str, list[str]] = {}

    def measure(mode: str) -> dict:
        counts.clear()
        batch = 1 if mode == "one_by_one" else args.batch_size
        started = time.perf_counter()
        replies[mode] = generation.generate(model, tok, prompts, args.max_new_tokens, batch, by_length=mode != "plain")
        seconds = time.perf_counter() - started
        tokens = sum(counts)
        return {"batch_size": batch, "seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds,
                "prompts_per_s": len(prompts) / seconds}

    reps = []
    for rep in range(args.reps):
        order = MODES[rep % len(MODES):] + MODES[: rep % len(MODES)]
        reps.append({mode: measure(mode) for mode in order})
    pairs = list(zip(replies["engine"], replies["plain"], strict=True))
    agreement = {"replies": sum(a == b for a, b in pairs) / len(pairs),
                 "answers": sum(final_answer(a) == final_answer(b) for a, b in pairs) / len(pairs),
                 "one_by_one_replies": sum(a == b for a, b in zip(replies["one_by_one"], replies["plain"])) / len(pairs)}
    Path(args.result).write_text(json.dumps({"model": base, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
                                             "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
                                             "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
                                             "agreement": agreement, "reps": reps}))


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
