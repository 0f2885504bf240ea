"""Rendering: rich tables for terminals, JSON for scripts. Reads results, never writes state."""
