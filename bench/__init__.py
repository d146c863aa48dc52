"""Benchmarks against the raw CRI lower bound; `python -m bench` runs them all
and writes docs/bench.md's generated section (bench/__main__.py)."""
