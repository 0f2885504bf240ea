"""Reading the state for `status`, reports, `show`, `events` and `routing`; never writes.

aggregates, cutover and filters are plain SQL on a `Raw` reader, the same text on both
backends, so `status` runs them without importing SQLAlchemy; queries lists rows through
SQLAlchemy Core inside a Store session.

Kept free of imports, so that loading aggregates does not bring in SQLAlchemy.
"""
