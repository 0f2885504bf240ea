"""Standalone test servers that stand in for systems we cannot run locally (Exchange)."""
