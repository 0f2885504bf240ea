"""Generators of sample and test data (tests, benchmarks, make demo)."""
