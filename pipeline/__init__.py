"""The pipeline shell: the DAG, stage wiring, the runner, standalone stages, launch, recovery."""
