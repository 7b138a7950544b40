"""The `s3` kind: config.py reads a system's bucket, templates and client settings; connector.py
erases every version of the subject's objects."""
