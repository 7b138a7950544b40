"""`erasure discover`: a draft erasure.toml from databases' and snapshot locations' schemas, with a
risk list. reflect.py and snapshots.py read the sources (read-only, values counted and never kept),
classify.py says which columns look personal, plan.py decides each table, draft.py writes the text,
run.py ties them together for the command line."""
