"""The `manual` kind: a system a person erases by hand. config.py reads its instructions and the
identifier types the person looks by; connector.py refuses to erase, since the worker never does:
it records the system as an open task that a person settles (`erasure tasks`)."""
