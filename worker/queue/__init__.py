"""The queue: the Celery app, its tasks (thin wrappers around the engine), the dispatch that sends
their messages, poison handling and graceful shutdown."""
