"""The data pipeline (`dvc repro`): sources -> clean -> mix -> decontaminate -> validate -> cards."""
