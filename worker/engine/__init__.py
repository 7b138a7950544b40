"""The engine: what happens to a request, from intake through the erasure of each system to its
settling, flags and proof. It imports the store, the config and the connectors, never a surface
or the queue."""
