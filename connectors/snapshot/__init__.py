"""The `snapshot` kind: training data. config.py reads a system; connector.py finds and rewrites
the files that hold a subject; formats.py reads and writes Parquet, JSON lines and CSV; match.py
and paths.py say which rows are whose; locations/ reach a local folder or an S3 prefix; delta.py
erases from a Delta table."""
