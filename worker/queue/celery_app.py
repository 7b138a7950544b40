"""The Celery app, configured for work that must never be lost."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from connectors import registry
from worker.config import Config, WorkerSettings

INTAKE_QUEUE = "erasure.intake"
MLFLOW_QUEUE = "erasure.mlflow"  # tagging flagged models: a slow MLflow server never holds up intake
QUEUES = (INTAKE_QUEUE, *(f"erasure.{kind}" for kind in registry.kinds()), MLFLOW_QUEUE)  # one per kind installed
DEAD_QUEUE = "erasure.dead"  # messages no task can run, set aside with their reason; nothing consumes it

app = Celery("erasure", set_as_current=True)


def queue_for(kind: str) -> str:
    """The queue that carries one kind's erasures, so slow rewrites never block fast deletes."""
    return f"erasure.{kind}"


def dead_letter_queue() -> Queue:
    """`erasure.dead`, declared like the queues the worker consumes, but kept out of them."""
    model: Queue = app.conf.task_queues[0]
    return Queue(DEAD_QUEUE, model.exchange, routing_key=DEAD_QUEUE, durable=True,
                 queue_arguments=model.queue_arguments)  # type: ignore[attr-defined]


def visibility_timeout(settings: WorkerSettings) -> float:
    """Redis hands an unacknowledged message to another worker after this long: it must outlast a
    message's longest wait for its countdown plus its erasure, or work is done twice."""
    return max(3600.0, 2 * (settings.lease_seconds + settings.longest_backoff(settings.max_attempts)))


def configure(config: Config) -> Celery:
    """Point the app at the config's broker with durable queues and late acknowledgement."""
    if app.conf.broker_url not in (None, config.broker_url):
        # pointed elsewhere before: the connection and producer pools Celery keeps were made for that
        # broker, and a publish would still go there (a process that loads a second config: tests, tools)
        app._pool = None
        app.amqp._producer_pool = None
    quorum = config.worker.quorum_queues
    # quorum queues delay a countdown inside RabbitMQ, which needs a topic exchange; with a direct
    # one the worker would hold each delayed message and could stall until it is due
    exchange = Exchange("erasure", type="topic" if quorum else "direct", durable=True)
    arguments = {"x-queue-type": "quorum"} if quorum else None
    transport_options: dict[str, object] = {}
    if config.broker_url.startswith(("amqp", "pyamqp")):
        transport_options["confirm_publish"] = True
    if config.broker_url.startswith(("redis", "rediss")):
        transport_options["visibility_timeout"] = visibility_timeout(config.worker)
    if config.broker_url.startswith("sqla+"):
        # the sqla transport hands every transport option to create_engine, so the
        # embedded broker's polling interval (1 s by default) is set on the class
        from kombu.transport import sqlalchemy as sqla_transport

        sqla_transport.Transport.polling_interval = 0.2
    app.conf.update(
        broker_url=config.broker_url,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        task_default_queue=INTAKE_QUEUE,
        task_default_exchange="erasure",
        task_queues=[Queue(name, exchange, routing_key=name, durable=True, queue_arguments=arguments)
                     for name in QUEUES],
        worker_consumer="worker.queue.poison:GuardedConsumer",  # poison is set aside, never fatal
        task_routes={"erasure.submit": {"queue": INTAKE_QUEUE}, "erasure.start": {"queue": INTAKE_QUEUE},
                     "erasure.tag_mlflow": {"queue": MLFLOW_QUEUE}},
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # after a broker reconnect, Celery restores a reduced prefetch count from the task thread
        # whose ack failed, with a basic.qos racing the event loop's on one socket: both wait forever
        # (seen with RabbitMQ restarted under load); one message per thread needs no reduction
        worker_enable_prefetch_count_reduction=False,
        broker_pool_limit=4,
        beat_scheduler="celery.beat:Scheduler",  # in memory: the reconciler is idempotent
        beat_schedule={
            "reconcile": {
                "task": "erasure.reconcile",
                "schedule": config.worker.reconcile_seconds,
                "options": {"queue": INTAKE_QUEUE, "expires": config.worker.reconcile_seconds},
            },
        } | _guard_watch(config),
    )
    return app


def _guard_watch(config: Config) -> dict[str, Any]:
    """The guard's watch, on the snapshot queue (its workers read the snapshots), when a snapshot
    system is configured and `guard_watch_seconds` is not 0."""
    every = config.worker.guard_watch_seconds
    if not every or not any(s.kind == "snapshot" for s in config.systems):
        return {}
    return {"guard-watch": {"task": "erasure.guard_watch", "schedule": every,
                            "options": {"queue": queue_for("snapshot"), "expires": every}}}
