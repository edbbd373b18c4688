"""The benchmark: one training epoch of three workloads, timed against the matmul-only limit.

``python -m bench --help`` (or ``make bench``); see docs/benchmarks.md.
"""
