"""The SQL job store: the only package that imports SQLAlchemy.

``Store`` (in ``queries``) is the facade every caller uses; ``records`` holds
the typed values that cross its boundary; ``tables`` is the schema, imported by
nothing outside ``store/`` and ``migrations/`` (ruff TID251).
"""
