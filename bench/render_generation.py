"""The generation figures' sections of docs/BENCHMARKS.md (bench/render.py assembles the page)."""

from __future__ import annotations


def _generation_setup(s: dict) -> str:
    return (f"On the first {s['prompts']} eval_math prompts, greedy, ≤ {s['max_new_tokens']} new tokens, batch "
            f"{s['batch_size']} (evaluate.batch_size), model dtype {s['dtype']}, {s['torch_threads']} threads: our path "
            "(`core/generation.py`, batches of the longest prompts first), the same path one prompt at a time, and "
            "plain `model.generate` on batches in the prompts' order, same checkpoint, in one process, order rotating "
            "per repetition. Tokens = generated ids up to and including the end-of-turn token.")


def _generation_table(s: dict) -> list[str]:
    a = s["agreement"]
    return [
        "| | tokens/s |", "|---|---|",
        f"| our path, batch {s['batch_size']} | {s['engine_tokens_per_s']:,.1f} |",
        f"| our path, one by one | {s['one_by_one_tokens_per_s']:,.1f} |",
        f"| plain `model.generate`, batch {s['batch_size']} | {s['plain_tokens_per_s']:,.1f} |",
        "",
        f"Agreement with `model.generate` (greedy, same weights): {100 * a['replies']:.0f} % of replies identical, "
        f"{100 * a['answers']:.0f} % of extracted final answers identical (one by one: {100 * a['one_by_one_replies']:.0f} % "
        "of replies).",
    ]


def generation_engine(fig: dict) -> list[str]:
    s = fig["summary"]
    return [_generation_setup(s), "", *_generation_table(s), "",
            f"Our path ÷ plain: **{s['engine_vs_plain']:.2f}x**."]


def generation_batching(fig: dict) -> list[str]:
    s = fig["summary"]
    if "engine_tokens_per_s" in s:
        return [_generation_setup(s), "", *_generation_table(s), "",
                f"Batched ÷ one by one: **{s['batched_vs_one']:.2f}x** ({min(s['batch_size'], s['prompts'])} rows per "
                f"batch bound it at {min(s['batch_size'], s['prompts'])}x)."]
    return [  # results files from before generation_engine: model.generate batched vs one by one
        f"`core/generation.py` on the first {s['prompts']} eval_math prompts, greedy, ≤ {s['max_new_tokens']} new "
        f"tokens, batch {s['batch_size']} (evaluate.batch_size) vs 1, same process, order alternating per repetition. "
        "Tokens = generated ids up to and including the end-of-turn token.",
        "",
        "| | tokens/s |", "|---|---|",
        f"| batched ({s['batch_size']}) | {s['batched_tokens_per_s']:,.1f} |",
        f"| one by one | {s['one_by_one_tokens_per_s']:,.1f} |",
        f"| **ratio** | **{s['ratio']:.2f}x** |",
        "",
        f"Note: batch {s['batch_size']} bounds the gain at {s['batch_size']}x; {100 * s['batched_slot_use']:.0f} % of the "
        "batched token slots produced a token (rows that end early wait for the longest row of their batch).",
    ]
