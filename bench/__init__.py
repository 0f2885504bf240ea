"""Benchmarks, each a module run as `python -m bench.NAME` from the repository's root (which
puts `tests.fixtures` within reach); `make bench` runs them all. Figures: docs/benchmarks.md."""
