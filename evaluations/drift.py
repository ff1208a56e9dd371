"""How far a trained policy moved from its input: KL divergence on the policy's own replies.

kl_to_reference: at every token position of each reply (the prompt's positions are left out), the
exact KL(p_policy(. | prefix) || p_reference(. | prefix)) over the whole vocabulary, in nats,
averaged over all reply tokens. Measured on the trained policy's own (greedy) replies to held-out
prompts, so it is the divergence along the paths the policy now takes; a KL-free RL stage (beta 0)
has nothing else holding it near its input, and a sharp rise is the first sign of a policy that
left the distribution its reward model and verifiers were built on.
"""

from __future__ import annotations

VERSION = "token-kl-1"


def kl_to_reference(policy, reference, tokenizer, prompts: list[list[dict]], replies: list[str],
                    batch_size: int = 4, max_length: int = 1024) -> float:
    import torch

    if len(prompts) != len(replies) or not prompts:
        raise ValueError(f"need one reply per prompt and at least one, got {len(prompts)} prompts, {len(replies)} replies")
    total, tokens = 0.0, 0
    device = next(policy.parameters()).device
    policy.eval()
    reference.eval()
    for i in range(0, len(prompts), batch_size):
        ids, masks = [], []
        for prompt, reply in zip(prompts[i:i + batch_size], replies[i:i + batch_size]):
            text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
            head = tokenizer(text, add_special_tokens=False)["input_ids"]  # as core/generation.py tokenizes it
            tail = tokenizer(reply, add_special_tokens=False)["input_ids"]
            seq = (list(head) + tail)[:max_length]
            ids.append(seq)
            masks.append([0] * len(head) + [1] * (len(seq) - len(head)))
        width = max(len(s) for s in ids)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in ids], device=device)
        attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in ids], device=device)
        # The logits at position t predict token t + 1: a reply token's distribution sits one to its left.
        reply_mask = torch.tensor([m[1:] + [0] * (width - len(m)) for m in masks], device=device, dtype=torch.bool)
        with torch.no_grad():
            logp = torch.log_softmax(policy(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float(), -1)
            logq = torch.log_softmax(reference(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float(), -1)
        kl = (logp.exp() * (logp - logq)).sum(-1)
        total += float(kl[reply_mask].sum())
        tokens += int(reply_mask.sum())
    return total / tokens if tokens else 0.0
