"""What folding the stored side costs a sql system, and what an index on the fold gives back.

    python benchmarks/sql_fold.py [--rows 200000] [--repeat 20]

A `customer` table of ROWS rows (emails in mixed case, as MySQL's Sakila and real forms store
them) is made on PostgreSQL, MariaDB and SQLite, in scratch databases dropped afterwards. For
each engine the connector's `verify` (the same match erase uses) looks one person up by email,
REPEAT times, in each of these ways:

- folded, no index: the default (`lower(...)` of the stored side): a full scan;
- folded, expression index: PostgreSQL `CREATE INDEX ... (lower(normalize(email, NFC)))`;
  MariaDB a generated column `email_folded` (`lower(email)`, PERSISTENT) with an index, named in
  `where` with `match = "exact"`; SQLite none (an index on erasure's registered functions would
  stop every other client from writing the table);
- exact, plain index: `match = "exact"` on an indexed column stored folded already.

Prints the median milliseconds per lookup of each and its ratio to the exact one. Figures only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from connectors.base import ConfigReader, Subject
from connectors.sql.config import SqlConfig
from connectors.sql.connector import SqlConnector

PG_ADMIN = os.environ.get("ERASURE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN = os.environ.get("ERASURE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")
FOLDS = {"email": ("lower",)}


def email(i: int) -> str:
    """Customer i's email, in one of the cases real tables hold."""
    name = f"customer.{i}@example.org"
    return (name.upper(), name, name.title())[i % 3]


def scratch(admin_url: str) -> tuple[str, Callable[[], None]]:
    """A new database on the server, and how to drop it."""
    db = f"erasure_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {db}")
    url = sa.make_url(admin_url).set(database=db)
    if url.get_backend_name() == "mysql":
        url = url.update_query_dict({"charset": "utf8mb4"})

    def drop() -> None:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if admin.dialect.name == "postgresql" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db}{force}")
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


def fill(url: str, rows: int) -> None:
    """The customer table: id, email as stored, email_folded kept lower-cased beside it."""
    engine = sa.create_engine(url)
    table = sa.Table("customer", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("email", sa.String(80)), sa.Column("email_folded", sa.String(80)))
    table.create(engine)
    with engine.begin() as conn:
        for start in range(0, rows, 20_000):
            conn.execute(table.insert(), [{"id": i, "email": email(i), "email_folded": email(i).lower()}
                                          for i in range(start, min(rows, start + 20_000))])
    engine.dispose()


def run(url: str, where: dict[str, str], match: str, repeat: int, rows: int) -> float:
    """The median milliseconds of one verify, looking up people spread over the table."""
    raw: dict[str, Any] = {"name": "app", "kind": "sql", "url": url,
                           "tables": [{"name": "customer", "where": where, "action": "delete", "match": match}]}
    sql = SqlConnector(SqlConfig.read(ConfigReader("bench", "system 'app'", raw, FOLDS)))
    times = []
    with sql:
        sql.verify(Subject({"email": (email(0).lower(),)}))  # reflect and connect outside the timing
        for n in range(repeat):
            i = (n * 7919) % rows
            begun = time.perf_counter()
            found = sql.verify(Subject({"email": (email(i).lower(),)}))
            times.append(time.perf_counter() - begun)
            assert found == 1, (url, where, match, found)
    return statistics.median(times) * 1000


def ddl(url: str, *statements: str) -> None:
    """Run DDL on the database (an index, a generated column)."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


def engine_figures(name: str, url: str, rows: int, repeat: int) -> list[tuple[str, float]]:
    """The three ways on one engine, in milliseconds."""
    fill(url, rows)
    figures = [("folded, no index", run(url, {"email": "email"}, "normalized", repeat, rows))]
    if name == "PostgreSQL":
        ddl(url, "CREATE INDEX customer_email_fold ON customer (lower(normalize(email, NFC)))", "ANALYZE customer")
        figures.append(("folded, expression index", run(url, {"email": "email"}, "normalized", repeat, rows)))
    elif name == "MariaDB":
        ddl(url, "ALTER TABLE customer ADD COLUMN email_lower VARCHAR(80) AS (lower(email)) PERSISTENT",
            "CREATE INDEX customer_email_lower ON customer (email_lower)", "ANALYZE TABLE customer")
        figures.append(("generated column, indexed", run(url, {"email_lower": "email"}, "exact", repeat, rows)))
    ddl(url, "CREATE INDEX customer_email_folded ON customer (email_folded)")
    figures.append(("exact, plain index", run(url, {"email_folded": "email"}, "exact", repeat, rows)))
    return figures


def main() -> None:
    """Print the figures of each engine reachable here."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"one lookup by email among {args.rows:,} customers, median of {args.repeat} (ms)")
    with tempfile.TemporaryDirectory() as folder:
        engines: list[tuple[str, Callable[[], tuple[str, Callable[[], None]]]]] = [
            ("PostgreSQL", lambda: scratch(PG_ADMIN)), ("MariaDB", lambda: scratch(MYSQL_ADMIN)),
            ("SQLite", lambda: (f"sqlite:///{folder}/bench.db", lambda: None)),
        ]
        for name, make in engines:
            try:
                url, drop = make()
            except sa.exc.OperationalError as exc:
                print(f"{name}: not reachable ({type(exc).__name__})")
                continue
            try:
                figures = engine_figures(name, url, args.rows, args.repeat)
            finally:
                drop()
            exact = figures[-1][1]
            for way, ms in figures:
                print(f"{name:<11} {way:<28} {ms:9.2f} ms  {ms / exact:8.1f}x exact")


if __name__ == "__main__":
    main()
