"""Fixtures of the discover tests: Fides' sample database (fides_sample.sql) loaded into a fresh
SQLite, PostgreSQL or MariaDB database, its PostgreSQL types translated as little as each needs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

SAMPLE = Path(__file__).with_name("fides_sample.sql")
TRANSLATIONS = {  # engine -> (pattern, replacement), applied in order
    "postgresql": [],
    "mysql": [(r"public\.", ""), (r"\bMONEY\b", "DECIMAL(10,2)"), (r"'\$([0-9.]+)'", r"'\1'"),
              (r"\bTIMESTAMP\b", "DATETIME")],
    "sqlite": [(r"public\.", ""), (r"\bSERIAL\b", "INTEGER"), (r"\bMONEY\b", "NUMERIC"), (r"'\$([0-9.]+)'", r"'\1'"),
               (r"CHARACTER VARYING", "VARCHAR")],
}


def statements(dialect: str) -> list[str]:
    """The sample's statements for one engine (PostgreSQL's sequences left out elsewhere)."""
    text = "\n".join(line for line in SAMPLE.read_text().splitlines() if not line.startswith("--"))
    found = [s.strip() for s in text.split(";\n") if s.strip()]
    if dialect != "postgresql":
        found = [s for s in found if not s.startswith("ALTER SEQUENCE")]
    for pattern, replacement in TRANSLATIONS[dialect]:
        found = [re.sub(pattern, replacement, s) for s in found]
    return found


def load_sample(url: str) -> str:
    """Load the sample into the database at url; the url."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements(conn.dialect.name):
            conn.exec_driver_sql(statement.rstrip(";"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def fides_url(request: pytest.FixtureRequest) -> str:
    """Fides' sample database on each SQL engine."""
    return load_sample(str(request.getfixturevalue(f"{request.param}_url")))


@pytest.fixture
def fides_pg(postgres_url: str) -> str:
    """Fides' sample database on PostgreSQL, as published."""
    return load_sample(postgres_url)
