"""The `sql` kind: config.py reads a system's tables, match.py finds a subject's rows, engine.py
reaches the database, connector.py erases in one transaction."""
