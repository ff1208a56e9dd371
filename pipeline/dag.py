"""The stage DAG: the one place that says which node feeds which (flows and reruns read it).

A node's function takes (iteration, *records of its inputs, in this order) and returns a Record.
"base" is the starting checkpoint (converted once and cached; not a tracked stage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pipeline import stages


@dataclass(frozen=True)
class Node:
    name: str
    fn: Callable
    inputs: tuple[str, ...]


NODES = (
    Node("curate", stages.curate, ()),
    Node("base", stages.base_model, ()),
    Node("sft", stages.sft, ("base", "curate")),
    Node("reward_model", stages.reward_model, ("sft", "curate")),
    # The baseline the final gate compares against, as early as its inputs allow, so that any
    # iteration that got as far as align has it recorded for a later rerun.
    Node("evaluate.base", stages.evaluate_base, ("base", "reward_model", "curate")),
    # Boundary evaluations: each trained checkpoint on small subsets, against the previous
    # boundary (its win rate and its gate's baseline); STAGE_GATES gates each one before the next
    # stage may start.
    Node("evaluate.sft", stages.evaluate_boundary, ("sft", "reward_model", "curate", "evaluate.base")),
    Node("align", stages.align, ("sft", "reward_model", "curate")),  # RM ranks on-policy pairs
    Node("evaluate.align", stages.evaluate_boundary, ("align", "reward_model", "curate", "evaluate.sft")),
    Node("reason", stages.reason, ("align", "curate")),
    Node("evaluate.reason", stages.evaluate_boundary, ("reason", "reward_model", "curate", "evaluate.align")),
    Node("safety", stages.safety, ("reason", "curate")),
    Node("evaluate.safety", stages.evaluate_boundary, ("safety", "reward_model", "curate", "evaluate.reason")),
    Node("evaluate.final", stages.evaluate_final, ("safety", "reward_model", "curate", "evaluate.base")),
)
NODE = {n.name: n for n in NODES}
ORDER = tuple(n.name for n in NODES)  # already topological
POLICY_STAGES = ("sft", "align", "reason", "safety")  # versions of the policy model, in order
GATE_INPUTS = ("evaluate.final", "evaluate.base", "reward_model", *POLICY_STAGES)
# Per-stage gate (gates.yaml section = the stage) run right after its boundary evaluation:
# {boundary node: (stage, its evaluation, the previous boundary, the stage's checkpoint)}.
STAGE_GATES = {f"evaluate.{s}": (s, f"evaluate.{s}", prev, s)
               for s, prev in zip(POLICY_STAGES, ("evaluate.base", *(f"evaluate.{p}" for p in POLICY_STAGES[:-1])))}


def downstream_of(name: str) -> list[str]:
    """`name` and every node that (transitively) depends on it, in execution order."""
    if name not in NODE:
        raise ValueError(f"unknown stage '{name}'; stages: {', '.join(n for n in ORDER if n != 'base')}")
    affected = {name}
    for node in NODES:
        if affected & set(node.inputs):
            affected.add(node.name)
    return [n for n in ORDER if n in affected]


def needed_by(names: list[str]) -> list[str]:
    """Nodes whose recorded outputs re-running `names` reads: their ancestors (and, when the final
    evaluation re-runs, what the gate compares against), minus `names` themselves."""
    need = set(GATE_INPUTS) if "evaluate.final" in names else set()
    for name in names:  # a re-run boundary evaluation is re-gated: it needs what the gate reads
        need |= set(STAGE_GATES[name][1:]) - {name} if name in STAGE_GATES else set()
    frontier = list(names) + list(need)
    while frontier:
        for parent in NODE[frontier.pop()].inputs:
            if parent not in need:
                need.add(parent)
                frontier.append(parent)
    return [n for n in ORDER if n in need and n not in names]


def policy_versions(records: dict) -> dict[str, str]:
    return {s: records[s].model_version for s in POLICY_STAGES}
