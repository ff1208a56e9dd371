"""Batched greedy generation with the model's chat template (evaluation and on-policy sampling).

Left padding so every row's continuation starts at the same position; batching many prompts is
several times faster than one-by-one on a CPU (bench's generation-batching figure measures it).
"""

from __future__ import annotations


def generate(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int,
             label: str = "generate") -> list[str]:
    """Greedy replies, in order; `label` names the progress line (core/progress.py)."""
    import torch

    from core.progress import Progress

    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    model.eval()
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    outputs: list[str] = []
    progress = Progress(label, len(texts), unit="reply")
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            new = gen[:, enc["input_ids"].shape[1]:]
            outputs += tokenizer.batch_decode(new, skip_special_tokens=True)
            progress.update(len(new))
    progress.close(announce=len(texts) > batch_size)  # one batch is quick; a long suite says when it is done
    return outputs


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
