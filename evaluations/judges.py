"""Which refusal judge an evaluation uses: the pattern baseline (evaluations/refusal.py) or a guard
model (evaluations/llama_guard.py), as `EvaluateConfig.refusal_classifier` names it."""

from __future__ import annotations

from evaluations.refusal import VERSION, PatternClassifier


def classifier(cfg, model_cfg):
    """The judge of responses to harmful prompts that `cfg.refusal_classifier` names."""
    if cfg.refusal_classifier == "pattern":
        return PatternClassifier()
    from evaluations.llama_guard import LlamaGuardClassifier

    return LlamaGuardClassifier(cfg.guard_model, model_cfg, max_new_tokens=cfg.guard_max_new_tokens,
                                max_unparseable_fraction=cfg.guard_max_unparseable_fraction, batch_size=cfg.batch_size)


def version(cfg) -> str:
    """The judge's version, part of the evaluate stage's suite versions (a new judge re-runs it)."""
    if cfg.refusal_classifier == "pattern":
        return VERSION
    from evaluations.llama_guard import VERSION as GUARD

    return f"{GUARD}:{cfg.guard_model}"
