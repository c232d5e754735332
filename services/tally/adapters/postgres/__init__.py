"""PostgreSQL: the schema (SQLModel + Alembic), the batch writer and the read side."""
