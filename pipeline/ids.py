"""What a user types to name an iteration or a model, resolved against MLflow, or one line saying
what was given, what was expected and how to list valid ones (exit 2).

An iteration is accepted as any of the ids the tools show: its MLflow parent run id (the MLflow UI,
the run table's title), its Prefect flow-run id (the Prefect UI's URL) or its Prefect flow-run name
(e.g. `nostalgic-ermine`, the Prefect UI's title). The iteration's parent run records the last two as
tags, so no Prefect server is needed to resolve them.
"""

from __future__ import annotations

import re

LIST_ITERATIONS = "list iterations with `posttrain runs`"
# The parent run of a flow ("iteration") and of `posttrain stage NAME` on its own ("stage") both
# record stage outputs as tags; reruns, verify, lineage and the report read either.
PARENT_KINDS = ("iteration", "stage")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class BadId(ValueError):
    """A name that resolves to nothing, or to the wrong kind of thing (the CLI exits 2)."""


def _experiment(client):
    return client.get_experiment_by_name("posttrain")


def _by_tag(client, tag: str, value: str) -> list:
    exp = _experiment(client)
    if exp is None or "'" in value:
        return []
    return client.search_runs([exp.experiment_id], f"tags.kind = 'iteration' and tags.{tag} = '{value}'",
                              order_by=["attributes.start_time DESC"])


def iteration(client, given: str) -> str:
    """The MLflow parent run id of the iteration `given` names (see module docstring)."""
    from mlflow.exceptions import MlflowException

    given = given.strip()
    if _RUN_ID.match(given):
        try:
            run = client.get_run(given)
        except MlflowException:
            run = None
        if run is not None:
            tags = run.data.tags
            if tags.get("kind") in PARENT_KINDS:
                return given
            parent = tags.get("mlflow.parentRunId")
            if parent:
                raise BadId(f"'{given}' is the MLflow run of stage '{tags.get('stage', run.info.run_name)}', not an "
                            f"iteration; its iteration is {parent} (pass that)")
            raise BadId(f"'{given}' is an MLflow run of kind '{tags.get('kind', '?')}', not an iteration; "
                        f"{LIST_ITERATIONS}")
    for tag in ("prefect_flow_run_id", "prefect_flow_run_name"):
        found = _by_tag(client, tag, given)
        if found:
            return found[0].info.run_id
    raise BadId(f"no iteration '{given}': expected an MLflow parent run id (32 hex digits), a Prefect flow-run id "
                f"or a Prefect flow-run name; {LIST_ITERATIONS}")


def model_version(client, ref: str):
    """The registered version `ref` names: NAME@ALIAS or NAME/VERSION."""
    from mlflow.exceptions import MlflowException

    if "@" in ref:
        name, what = ref.split("@", 1)
    elif "/" in ref:
        name, what = ref.rsplit("/", 1)
    else:
        raise BadId(f"'{ref}': expected NAME@ALIAS or NAME/VERSION, e.g. posttrain@champion")
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        raise BadId(f"no registered model '{name}' (registered: {', '.join(names) or 'none yet'})") from None
    try:
        return client.get_model_version_by_alias(name, what) if "@" in ref else client.get_model_version(name, what)
    except MlflowException:
        if "@" in ref:
            raise BadId(f"no alias '{what}' on model '{name}' (aliases: {', '.join(sorted(model.aliases)) or 'none'}); "
                        f"a gate that passes sets them") from None
        latest = max((int(v.version) for v in client.search_model_versions(f"name = '{name}'")), default=0)
        raise BadId(f"no version '{what}' of model '{name}' (versions 1-{latest})") from None
