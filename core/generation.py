"""Greedy generation with the model's chat template (evaluation), and sampling (on-policy pairs).

Left padding so every row's continuation starts at the same position. On a CPU a decode step
costs little more for 8 rows than for 1 (reading the weights dominates), so batching is several
times faster than one-by-one, and larger batches keep gaining (bench's generation figures measure
it). Prompts are batched longest first, so a batch pads its prompts to a length close to their own
instead of the longest of the whole set; replies come back in the order of the prompts.
"""

from __future__ import annotations

# Prompts per batch of a stage's own greedy passes (safety's self-answers, critiques, revisions
# and probes; reason's held-out accuracy): each pass's prompts in one batch. A decode step reads
# every weight once for all rows, so on a CPU 64 rows cost a few times one row's step, not 64x.
STAGE_BATCH = 64


def generate(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int,
             label: str = "generate", by_length: bool = True) -> list[str]:
    """Greedy replies, in the order of `prompts`; `label` names the progress line (core/progress.py).
    by_length=False batches the prompts in the order given (plain `model.generate` use, for the
    bench's comparison)."""
    import torch

    from core.progress import Progress

    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    model.eval()
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    order = list(range(len(texts)))
    if by_length:
        order.sort(key=lambda i: -len(ids[i]))
    replies: list[str] = [""] * len(texts)
    progress = Progress(label, len(texts), unit="reply")
    ticker = _token_ticker(progress, max_new_tokens)
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            ticker.step = 0
            enc = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt").to(device)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                 stopping_criteria=[ticker])
            for i, text in zip(rows, tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)):
                replies[i] = text
            progress.shown.pop("batch", None)
            progress.update(len(rows))
    progress.close(announce=len(texts) > batch_size)  # one batch is quick; a long suite says when it is done
    return replies


def _token_ticker(progress, max_new_tokens: int):
    """A stopping criterion that never stops: it shows how far the current batch is (token k of
    max_new_tokens), so one large batch is not silent for minutes."""
    import torch
    from transformers import StoppingCriteria

    class Ticker(StoppingCriteria):
        def __init__(self):
            self.step = 0

        def __call__(self, input_ids, scores, **kwargs):
            self.step += 1
            progress.update(0, batch=f"token {min(self.step, max_new_tokens)}/{max_new_tokens} of this batch")
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return Ticker()


def sample(model, tokenizer, prompts: list[list[dict]], n: int, max_new_tokens: int, temperature: float,
           batch_size: int, seed: int) -> list[list[str]]:
    """n sampled replies per prompt (on-policy preference pairs, rejection sampling). Seeded once
    per call, so the same model, prompts and seed give the same samples on the same machine."""
    import torch

    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    model.eval()
    torch.manual_seed(seed)
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    outputs: list[list[str]] = []
    # Each prompt repeated n times inside a batch; batch_size counts sequences, not prompts.
    per_batch = max(1, batch_size // n)
    with torch.no_grad():
        for i in range(0, len(texts), per_batch):
            chunk = [t for t in texts[i : i + per_batch] for _ in range(n)]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                 top_p=1.0, top_k=0, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
            decoded = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            outputs += [decoded[j : j + n] for j in range(0, len(decoded), n)]
    return outputs
