"""Benchmarks: each runs as ``python -m bench.NAME`` and writes its figures to bench/out/."""
