"""dlkernels' benchmarks: pytest-benchmark suites (``bench_*.py``) and the
runner that prints the comparison tables (``python -m bench --help``)."""
