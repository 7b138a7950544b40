"""How the s3 connector erases a prefix of object versions, against the naive way.

    python benchmarks/s3_erase.py [--versions 10000] [--subjects 100 --objects 10]

Starts moto's S3 server (a ThreadedMotoServer, in a child process so it has a core of its
own) on a free loopback port, with fake credentials. Two versioned buckets get the same
prefix of versions: per key three object versions and a delete marker (what an
application's plain delete leaves behind). One bucket is erased by the connector (one
listing pass, DeleteObjects in batches of 1,000), the other by a listing followed by one
DeleteObject per version. Prints versions per second and API calls per 1,000 versions of
each, and their ratios; API calls are counted with a botocore `before-call` hook. Listing
time is shown apart: moto copies the whole bucket for every ListObjectVersions page, so at
this size listing dominates the connector's time, which real S3 would not.

Then K subjects (`--subjects`, each with `--objects` objects under its own prefix; 0 skips this
part) are erased twice from two buckets seeded alike: one erase() per subject (each its own
DeleteObjects call, as before the connector batched), and one erase_many() pass (each subject
listed on its own, the deletes shared, 1,000 keys a call). Prints the calls of each kind, the
time of each way and the time spent in each kind of call, and their ratios. On moto a listing
costs the whole bucket, not the prefix: one by one, each subject's listing comes after the
others' deletes and finds a smaller bucket, so compare the deleting seconds, not the totals.
Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

FAKE_AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
PREFIX = "avatars/1001/"  # the subject's prefix; each way gets a bucket of its own
VERSIONS_PER_KEY = 4  # three object versions and one delete marker
SEED_THREADS = 16
Row = tuple[str, int, float, float, int, int]  # way, erased, seconds, listing seconds, API calls, left


def serve(reply: Connection) -> None:
    """Run moto's S3 server on a free loopback port until this process is terminated."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request costs time
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    reply.send(server.get_host_and_port()[1])
    threading.Event().wait()


def seed(client: Any, bucket: str, keys: int) -> None:
    """A versioned bucket with VERSIONS_PER_KEY versions (the last a delete marker) on each key under PREFIX."""
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    names = [f"{PREFIX}{i:05}.png" for i in range(keys)]

    def write(key: str) -> None:
        for _ in range(VERSIONS_PER_KEY - 1):
            client.put_object(Bucket=bucket, Key=key, Body=b"x")

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(write, names))
    for start in range(0, len(names), 1000):  # no VersionId in a versioned bucket: a delete marker each
        objects = [{"Key": key} for key in names[start : start + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def metered(client: Any) -> tuple[Counter[str], Counter[str]]:
    """Live counts of a client's API calls and of the seconds they took, by operation."""
    calls: Counter[str] = Counter()
    seconds: Counter[str] = Counter()

    def before(model: Any, context: dict[str, Any], **_: Any) -> None:
        calls[model.name] += 1
        context["bench_started"] = time.perf_counter()

    def after(model: Any, context: dict[str, Any], **_: Any) -> None:
        seconds[model.name] += time.perf_counter() - context["bench_started"]

    client.meta.events.register("before-call.s3.*", before)
    client.meta.events.register("after-call.s3.*", after)
    return calls, seconds


def listed(client: Any, bucket: str) -> list[tuple[str, str]]:
    """Every (key, version id) of a version or delete marker under PREFIX."""
    found = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=PREFIX):
        found += [(v["Key"], v["VersionId"]) for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
    return found


def erase_naively(client: Any, bucket: str) -> int:
    """List every version under PREFIX, then delete them one DeleteObject call at a time."""
    found = listed(client, bucket)
    for key, version_id in found:
        client.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
    return len(found)


def measure(way: str, client: Any, erase: Callable[[], int], check: Callable[[], int]) -> Row:
    """Erase one way, metering the client; then count what is left."""
    calls, seconds = metered(client)
    start = time.perf_counter()
    erased = erase()
    elapsed = time.perf_counter() - start
    return way, erased, elapsed, seconds["ListObjectVersions"], sum(calls.values()), check()


def seed_subjects(client: Any, bucket: str, subjects: int, objects: int) -> list[str]:
    """A bucket with `objects` objects under each of `subjects` users' prefixes; their user ids."""
    client.create_bucket(Bucket=bucket)
    ids = [str(2000 + i) for i in range(subjects)]
    keys = [f"avatars/{user_id}/{n:03}.png" for user_id in ids for n in range(objects)]
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b"x"), keys))
    return ids


def shared_calls(endpoint: str, client: Any, subjects: int, objects: int) -> None:
    """K subjects erased one erase() at a time, then (from a bucket seeded alike) in one erase_many() pass."""
    from connectors.base import ConfigReader, Outcome, Subject
    from connectors.s3.config import S3Config
    from connectors.s3.connector import S3Connector

    print(f"\nseeding 2 x {subjects:,} subjects x {objects:,} objects ...", flush=True)
    rows = []
    for way, bucket in (("one erase() per subject", "bench-one-by-one"), ("one erase_many() pass", "bench-shared")):
        ids = seed_subjects(client, bucket, subjects, objects)
        raw = {"name": "uploads", "kind": "s3", "bucket": bucket, "endpoint_url": endpoint,
               "region": "us-east-1", "prefixes": ["avatars/{user_id}/"]}
        config = S3Config.read(ConfigReader("bench", "system 'uploads'", raw, frozenset({"user_id"})))
        people = [Subject({"user_id": (user_id,)}) for user_id in ids]
        with S3Connector(config) as connector:
            calls, seconds = metered(connector.client)
            start = time.perf_counter()
            if bucket == "bench-shared":
                done = connector.erase_many(people)
            else:
                done = [connector.erase(person) for person in people]
            elapsed = time.perf_counter() - start
        erased = sum(o.items_erased for o in done if isinstance(o, Outcome))
        rows.append((way, erased, elapsed, calls["ListObjectVersions"], seconds["ListObjectVersions"],
                     calls["DeleteObjects"], seconds["DeleteObjects"]))
    lines = [("", "versions", "seconds", "ListObjectVersions", "listing s", "DeleteObjects", "deleting s")]
    lines += [(way, f"{n:,}", f"{t:.2f}", f"{lists:,}", f"{ls:.2f}", f"{deletes:,}", f"{ds:.2f}")
              for way, n, t, lists, ls, deletes, ds in rows]
    (_, _, t1, _, _, d1, ds1), (_, _, t2, _, _, d2, ds2) = rows
    lines.append(("one pass vs one by one", "", f"{t1 / t2:,.1f}x faster", "", "",
                  f"{d1 / max(d2, 1):,.1f}x fewer", f"{ds1 / max(ds2, 1e-9):,.1f}x faster"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        cells = [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        print("  ".join([line[0].ljust(widths[0]), *cells]).rstrip())


def main() -> None:
    """Seed, erase both ways, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10_000, help="versions per way (default 10000)")
    parser.add_argument("--subjects", type=int, default=100, help="subjects of the shared-call case (0: skip it)")
    parser.add_argument("--objects", type=int, default=10, help="objects per subject in that case (default 10)")
    args = parser.parse_args()
    keys = max(1, args.versions // VERSIONS_PER_KEY)

    os.environ.update(FAKE_AWS)
    for real in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(real, None)

    import boto3
    from botocore.config import Config

    from connectors.base import ConfigReader, Subject
    from connectors.s3.config import S3Config
    from connectors.s3.connector import S3Connector

    receive, reply = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(reply,), daemon=True)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{receive.recv()}"
        config = Config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=SEED_THREADS)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)
        versions = keys * VERSIONS_PER_KEY
        print(f"seeding 2 x {versions:,} versions ({keys:,} keys x 3 versions + 1 delete marker) ...", flush=True)
        start = time.perf_counter()
        seed(client, "bench-connector", keys)
        seed(client, "bench-naive", keys)
        print(f"seeded in {time.perf_counter() - start:.1f} s on {endpoint}\n", flush=True)

        raw = {"name": "uploads", "kind": "s3", "bucket": "bench-connector", "endpoint_url": endpoint,
               "region": "us-east-1", "prefixes": ["avatars/{user_id}/"]}
        s3_config = S3Config.read(ConfigReader("bench", "system 'uploads'", raw, frozenset({"user_id"})))
        with S3Connector(s3_config) as connector:
            subject = Subject({"user_id": ("1001",)})
            rows = [measure("s3 connector", connector.client, lambda: connector.erase(subject).items_erased,
                            lambda: len(listed(client, "bench-connector")))]
        naive = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)
        rows.append(measure("naive delete_object", naive, lambda: erase_naively(naive, "bench-naive"),
                            lambda: len(listed(client, "bench-naive"))))
        print_table(rows)
        if args.subjects > 0:
            shared_calls(endpoint, client, args.subjects, max(1, args.objects))
    finally:
        server.terminate()
        server.join()
    print(f"\nload average: {' '.join(f'{n:.2f}' for n in os.getloadavg())}")


def print_table(rows: list[Row]) -> None:
    """The figures of each way and the ratios, aligned."""
    lines = [("", "versions", "seconds", "of which listing", "versions/s", "API calls", "calls/1k versions", "left")]
    for way, erased, seconds, listing, calls, left in rows:
        per_k = calls * 1000 / erased if erased else 0.0
        lines.append((way, f"{erased:,}", f"{seconds:.2f}", f"{listing:.2f}", f"{erased / seconds:,.0f}",
                      f"{calls:,}", f"{per_k:,.1f}", f"{left:,}"))
    (_, e1, s1, _, c1, _), (_, e2, s2, _, c2, _) = rows
    speed = (e1 / s1) / (e2 / s2) if e1 and e2 else 0.0
    fewer = (c2 / e2) / (c1 / e1) if e1 and e2 and c1 else 0.0
    lines.append(("connector vs naive", "", "", "", f"{speed:,.1f}x faster", "", f"{fewer:,.1f}x fewer", ""))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        cells = [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        print("  ".join([line[0].ljust(widths[0]), *cells]).rstrip())


if __name__ == "__main__":
    main()
