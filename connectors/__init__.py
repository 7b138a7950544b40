"""Connectors: the interface every kind keeps (base.py), the errors they raise (errors.py), how
values are kept out of messages (redact.py) and how identifiers are folded (normalize.py); one
subpackage per kind (sql/, s3/, snapshot/), and the registry that finds the kinds installed
(registry.py: the entry-point group `erasure.connectors`). Nothing is imported here: a kind is
loaded only when a config names it."""
