"""Database edge: engine creation, schema management (Alembic) and the store."""
