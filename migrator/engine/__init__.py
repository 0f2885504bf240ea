"""Batches, leases, workers, rate limiting and the exactly-once chunk protocol (docs/engine.md)."""
