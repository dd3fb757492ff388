"""Alembic migrations of the Ruth AI Core database (``versions/NNNN_*.py``), applied by ``ruth-ai db upgrade``."""
