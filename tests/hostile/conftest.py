"""Settings for the generated hostile-input tests. By default each test runs a small, fixed number of
examples, derandomized (the same inputs every run, no example database), so CI is fast and
reproducible. To search longer, with fresh random inputs each run:

    ERASURE_HYPOTHESIS_EXAMPLES=2000 pytest -p no:cacheprovider tests/hostile

which makes every test run the hypothesis profile `hostile-long`: that many examples each, randomized;
a failure prints the `@reproduce_failure` blob that replays it. The profiles are given to each test by
the `examples` fixture, never loaded globally: the rest of the suite keeps its own settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers import HOSTILE_TOKEN, TYPES, Examples, ListDispatch, api_tokens, stub, system_table, write_config
from worker.config import load
from worker.runtime import Runtime

LONG = os.environ.get("ERASURE_HYPOTHESIS_EXAMPLES", "").strip()
QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
         HealthCheck.function_scoped_fixture]
settings.register_profile("hostile", database=None, derandomize=True, deadline=None, suppress_health_check=QUIET,
                          print_blob=True)
settings.register_profile("hostile-long", settings.get_profile("hostile"), derandomize=False,
                          max_examples=int(LONG) if LONG.isdigit() and int(LONG) > 0 else 1000)

SYSTEMS = (stub("crm", uses=["plain", "lowered", "uppered", "trimmed", "user_id"]) + stub("mail", uses=["email"])
           + stub("features", uses=["code", "user_id"], training=True)
           + system_table("uploads", "s3", bucket="uploads", endpoint_url="http://127.0.0.1:9", region="us-east-1",
                          prefixes=["avatars/{handle}/"], keys=["exports/{handle}.zip"]))


@pytest.fixture
def examples() -> Examples:
    """Settings for one generated test, `examples(n)`: n derandomized examples, or the long profile when
    ERASURE_HYPOTHESIS_EXAMPLES is set."""
    if LONG:
        return lambda n: settings(settings.get_profile("hostile-long"))
    return lambda n: settings(settings.get_profile("hostile"), max_examples=n)


@pytest.fixture
def runtime(tmp_path: Path, store_url: str) -> Iterator[Runtime]:
    """A runtime over a store (SQLite, then PostgreSQL) whose identifier types are TYPES (each fold, the
    usual patterns), with stub systems using them, an s3 system templating `handle` and a token of both API
    scopes; its messages are kept in a list."""
    path = write_config(tmp_path, SYSTEMS, store_url=store_url, identifiers=TYPES,
                        top=api_tokens({HOSTILE_TOKEN: ["submit", "read"]}))
    rt = Runtime(load(path), dispatch=ListDispatch())
    rt.check()
    yield rt
    rt.close()
