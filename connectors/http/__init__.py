"""The `http` kind: config.py reads a system's URL and body templates, headers, signing secret and
time limits; connector.py makes the signed, idempotent calls that erase and the GETs that verify."""
