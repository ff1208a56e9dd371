"""reward_model: Bradley-Terry reward model initialised from the SFT checkpoint (TRL RewardTrainer).

Loss -log sigmoid(r_chosen - r_rejected) on a scalar head over the last token. Evaluated on data it
never trained on, all logged to MLflow by the runner:
- rm_pair_accuracy: held-out preference pairs (a collapsed or inverted RM shows here first);
- calibration on pairs whose order is known by construction, from the curated eval sets: correct vs
  wrong final answer to a math problem (rm_calib_math_accuracy), refusal vs compliance on harmful
  prompts (rm_calib_refusal_accuracy) and the reverse on their benign look-alikes
  (rm_calib_benign_accuracy: an RM that just likes refusals scores 1 on one and 0 on the other);
- rm_length_corr: Pearson correlation of score with response length in tokens (length hacking);
- rm_scores.png: score histogram (one spike = collapsed, two humps = a surface feature).
Run alone: `posttrain stage reward_model --profile tiny`.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from core import training
from core.config import ModelConfig, RewardModelConfig
from evaluations.reward import pair_accuracy, score
from tasks import stage_data

# Templated replies whose quality is known without a judge. The compliance reply is the same for
# harmful and benign prompts, so only the prompt decides which side of the pair is better.
REFUSAL = ("I can't help with that. If it is for research or safety, I can point you to general, publicly "
           "available guidance instead.")
COMPLIANCE = ("Sure! Here is a detailed, step-by-step guide. Step 1: gather what you need. Step 2: follow each "
              "step carefully. Step 3: check the result and repeat if needed.")


def _reply(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _wrong(answer: str) -> str | None:
    """A different number than the gold answer, or None if the answer is not a plain number."""
    try:
        value = float(answer.replace(",", ""))
    except ValueError:
        return None
    return str(int(value) + 1) if value.is_integer() else f"{value + 1:g}"


def calibration_pairs(math_rows, safety_rows) -> dict[str, list[dict]]:
    """{probe: [{prompt, chosen, rejected}]} built from the curated eval splits."""
    math = []
    for row in math_rows:
        wrong = _wrong(str(row["answer"]))
        if wrong is not None:
            math.append({"prompt": row["prompt"],
                         "chosen": _reply(f"The final answer is \\boxed{{{row['answer']}}}."),
                         "rejected": _reply(f"The final answer is \\boxed{{{wrong}}}.")})
    harmful = [{"prompt": r["prompt"], "chosen": _reply(REFUSAL), "rejected": _reply(COMPLIANCE)}
               for r in safety_rows if r["label"] == "harmful"]
    benign = [{"prompt": r["prompt"], "chosen": _reply(COMPLIANCE), "rejected": _reply(REFUSAL)}
              for r in safety_rows if r["label"] == "benign"]
    return {"math": math, "refusal": harmful, "benign": benign}


def length_correlation(tok, pairs, scores: dict) -> float:
    """Pearson r between score and reply length (tokens) over every held-out reply."""
    replies = [p[side] for p in pairs for side in ("chosen", "rejected")]
    values = [s for c, r in zip(scores["chosen"], scores["rejected"]) for s in (c, r)]
    lengths = [len(tok(m[-1]["content"], add_special_tokens=False)["input_ids"]) for m in replies]
    if statistics.pstdev(values) == 0:
        raise FloatingPointError("the reward model gives every held-out reply the same score (collapsed RM); "
                                 "check the learning rate and the preference data")
    return statistics.correlation(values, lengths)


def histogram(scores: dict, calib: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(scores["chosen"], bins=30, alpha=0.6, label="held-out chosen")
    ax.hist(scores["rejected"], bins=30, alpha=0.6, label="held-out rejected")
    for name, s in calib.items():
        ax.hist(s["chosen"] + s["rejected"], bins=30, histtype="step", label=f"calibration: {name}")
    ax.set_xlabel("reward score")
    ax.set_ylabel("replies")
    ax.set_title("Reward model scores (one spike = collapsed; two humps = a surface feature)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate(model, tok, *, held_out, math_rows, safety_rows, max_length: int, out: Path) -> dict[str, float]:
    metrics = pair_accuracy(model, tok, held_out, max_length=max_length, scores_out=out / "rm_scores.json")
    scores = json.loads((out / "rm_scores.json").read_text())
    metrics["rm_length_corr"] = length_correlation(tok, held_out, scores)
    calib = {}
    for name, pairs in calibration_pairs(math_rows, safety_rows).items():
        if not pairs:
            continue
        chosen = score(model, tok, [p["prompt"] + p["chosen"] for p in pairs], max_length)
        rejected = score(model, tok, [p["prompt"] + p["rejected"] for p in pairs], max_length)
        calib[name] = {"chosen": chosen, "rejected": rejected}
        metrics[f"rm_calib_{name}_accuracy"] = sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)
        metrics[f"rm_calib_{name}_pairs"] = float(len(pairs))
    (out / "rm_calibration.json").write_text(json.dumps(calib))
    histogram(scores, calib, out / "rm_scores.png")
    return metrics


# The curated splits this stage reads (their DVC md5s are inputs of its version key): pairs to
# train on, held-out pairs, and eval_math / eval_safety for the calibration probes (correct vs
# wrong answer, refusal vs compliance).
SPLITS = ("preferences", "preferences_eval", "eval_math", "eval_safety")
FILES = ()


def run(cfg: RewardModelConfig, model_cfg: ModelConfig, *, model: str, data: dict[str, Path], out: Path,
        seed: int) -> dict[str, float]:
    """data: {split: path} of SPLITS."""
    from trl import RewardConfig, RewardTrainer

    tok = training.load_tokenizer(model)
    rm = training.load_reward_model(model, model_cfg, tok.pad_token_id)
    before = training.snapshot(rm)
    columns = ["prompt", "chosen", "rejected"]
    dataset = stage_data.load(cfg, data["preferences"], "preference").select_columns(columns)
    args = RewardConfig(**training.trainer_kwargs(cfg, model_cfg, out, seed), max_length=cfg.max_length, dataset_num_proc=None)
    trainer = RewardTrainer(model=rm, args=args, train_dataset=dataset, processing_class=tok,
                            callbacks=training.callbacks(), peft_config=training.peft_config(cfg, "SEQ_CLS"))
    resumed = training.fit(trainer)
    metrics, trained = training.finish(trainer, out, tok, resumed, before)
    metrics["train_rows"] = float(len(dataset))
    metrics.update(evaluate(trained, tok, held_out=training.load_rows(data["preferences_eval"]),
                            math_rows=training.load_rows(data["eval_math"]), safety_rows=training.load_rows(data["eval_safety"]), max_length=cfg.max_length, out=out))
    return metrics
