"""The stage DAG: the one place that says which node feeds which (flows and reruns read it).

A node's function takes (iteration, *records of its inputs, in this order) and returns a Record.
"base" is the starting checkpoint (converted once and cached; not a tracked stage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from posttrain import stages


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
    Node("align", stages.align, ("sft", "curate")),
    Node("reason", stages.reason, ("align", "curate")),
    Node("safety", stages.safety, ("reason", "curate")),
    Node("evaluate.final", stages.evaluate_final, ("safety", "reward_model", "curate", "evaluate.base")),
)
NODE = {n.name: n for n in NODES}
ORDER = tuple(n.name for n in NODES)  # already topological
POLICY_STAGES = ("sft", "align", "reason", "safety")  # versions of the policy model, in order
GATE_INPUTS = ("evaluate.final", "evaluate.base", "reward_model", *POLICY_STAGES)


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
    frontier = list(names) + list(need)
    while frontier:
        for parent in NODE[frontier.pop()].inputs:
            if parent not in need:
                need.add(parent)
                frontier.append(parent)
    return [n for n in ORDER if n in need and n not in names]


def policy_versions(records: dict) -> dict[str, str]:
    return {s: records[s].model_version for s in POLICY_STAGES}
