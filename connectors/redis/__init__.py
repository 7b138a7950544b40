"""The `redis` kind: config.py reads a system's URL and templates (exact keys, hash fields, set and
sorted-set members, scanned prefixes); connector.py removes what they name and counts what is left.
Modules here import the redis library by its absolute name, which this package does not shadow."""
