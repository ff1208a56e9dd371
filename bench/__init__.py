"""Benchmarks: `.venv/bin/python -m bench [--quick] [--only NAME,...]` measures the figures of
docs/BENCHMARKS.md (iteration_time, overhead, rerun, sft_vs_trl, packing, generation_engine, generation_batching,
flops) and writes bench/results/<date>.json. See bench/__main__.py."""
