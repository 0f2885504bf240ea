"""Reaching the state database: what an opening may do (access), URLs, engines and the schema's
revision (connect, revision), and the DBAPI-level paths that need no SQLAlchemy (raw, readonly,
sqlite_files, urls).

Kept free of imports: `status` loads access, raw, readonly, revision, sqlite_files and urls
without SQLAlchemy, and importing this package must not bring it in.
"""
