"""Benchmarks (issue 9): `.venv/bin/python -m bench [--quick] [--only 1,...,7]` measures the seven
figures of docs/BENCHMARKS.md and writes bench/results/<date>.json. See bench/__main__.py."""
