"""Alembic migrations of migrator's own state schema (applied by open_store, not by hand)."""
