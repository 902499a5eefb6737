"""Alembic environment: migrates the database named by the desk's configuration."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from support_desk.schema import metadata

config = context.config


def run_migrations() -> None:
    """Run the migrations online against ``sqlalchemy.url``."""
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
