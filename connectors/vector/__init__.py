"""The `vector` kind: embeddings. config.py reads a system; connector.py erases a subject and
reports the table as training data; lance.py (LanceDB) and qdrant.py (Qdrant) reach the stores,
each imported only when a system names it."""
