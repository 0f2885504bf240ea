"""Alembic environment: runs on the connection open_store hands over in config.attributes.

For developers, `alembic -c <an ini with script_location=migrator/store/migrations>` also works:
then the URL comes from the ini's sqlalchemy.url.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from migrator.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        transactional_ddl=True,
        render_as_batch=True,  # SQLite can only ALTER a table by copying it
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url in the alembic ini, or use migrator's open_store")
    engine = create_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
