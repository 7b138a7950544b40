"""Where PostgreSQL's and MariaDB's case and space rules are not Python's, the sql connector still matches
as Python folds (connectors/sql/edges.py): a stored "İ", a word-final "Σ", a "ß" upper-cased, a value padded
by a Unicode space. Each table holds, beside the person's own rows, the rows a widened match would take."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from connectors.base import Subject
from connectors.normalize import fold_text
from tests.helpers import sql_connector

FOLDS = {"email": ("lower",), "code": ("upper",), "padded": ("trim",)}


@pytest.fixture
def person(sql_url: str) -> sa.Table:
    """An empty `person` table in a fresh database of each engine."""
    return person_table(sql_url)


def person_table(url: str) -> sa.Table:
    """An empty `person` table (id, value), utf8mb4 on MariaDB."""
    engine = sa.create_engine(url)
    table = sa.Table("person", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("value", sa.String(50)), mysql_charset="utf8mb4")
    table.create(engine)
    engine.dispose()
    return table


def seed(url: str, table: sa.Table, values: list[str]) -> None:
    """One row per value."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "value": value} for i, value in enumerate(values)])
    engine.dispose()


def erase(url: str, table: sa.Table, id_type: str, typed: str) -> list[str]:
    """Erase the person whose value was typed so (folded as intake folds it); the stored values taken, sorted."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        before = {row.id: row.value for row in conn.execute(sa.select(table))}
    raw = {"name": "app", "kind": "sql", "url": url,
           "tables": [{"name": "person", "where": {"value": id_type}, "action": "delete"}]}
    with sql_connector(raw, FOLDS) as sql:
        sql.erase(Subject({id_type: (fold_text(typed, FOLDS[id_type]),)}))
    with engine.connect() as conn:
        after = {row.id for row in conn.execute(sa.select(table))}
    engine.dispose()
    return sorted(value for i, value in before.items() if i not in after)


def test_a_dotted_capital_i_is_not_an_i(sql_url: str, person: sa.Table) -> None:
    """With lower, a stored `İlker` (composed, or I and a combining dot) is the person Python folds it to
    (`i̇lker`, i and a combining dot), never `ilker` (PostgreSQL's and MariaDB's lower() make it `ilker`)."""
    seed(sql_url, person, ["İlker@x.tr", "I\u0307lker@x.tr", "ilker@x.tr", "Ilker@x.tr"])
    assert erase(sql_url, person, "email", "ilker@x.tr") == ["Ilker@x.tr", "ilker@x.tr"]
    assert erase(sql_url, person, "email", "İlker@x.tr") == ["I\u0307lker@x.tr", "İlker@x.tr"]


def test_a_final_sigma_is_folded_as_python_folds_it(sql_url: str, person: sa.Table) -> None:
    """With lower, a stored `ΟΔΟΣ` ends in `ς` as Python folds it: it is the person who typed `Οδος`, never
    the one stored as `οδοσ` (the engines lower every Σ to σ)."""
    seed(sql_url, person, ["ΟΔΟΣ@x.gr", "οδοσ@x.gr", "Οδος@x.gr"])
    assert erase(sql_url, person, "email", "οδοσ@x.gr") == ["οδοσ@x.gr"]
    assert erase(sql_url, person, "email", "Οδος@x.gr") == ["ΟΔΟΣ@x.gr", "Οδος@x.gr"]


def test_upper_takes_a_sharp_s_as_python_spells_it(sql_url: str, person: sa.Table) -> None:
    """With upper, a stored `straße` is `STRASSE` as Python upper-cases it, so it is erased with the person's
    other spellings (the engines keep the ß and missed it), and `strase` stays."""
    seed(sql_url, person, ["straße", "STRASSE", "STRAßE", "strase"])
    assert erase(sql_url, person, "code", "Straße") == ["STRASSE", "STRAßE", "straße"]


def test_trim_strips_only_ascii_whitespace(sql_url: str, person: sa.Table) -> None:
    """With trim, a stored value padded by ASCII whitespace is the person's; one padded by a Unicode space (no-
    break, ideographic, em, line separator, NEL) is another value (MariaDB's [[:space:]] took them all)."""
    ascii_padded = ["abc", " \tabc\r\n", "\x0b\x0cabc\x0b"]
    seed(sql_url, person, [*ascii_padded, "\u00a0abc", "abc\u3000", "\u2003abc", "\u2028abc", "abc\u0085", "a bc"])
    assert erase(sql_url, person, "padded", "abc") == sorted(ascii_padded)


def test_an_index_on_the_fold_still_serves(postgres_url: str) -> None:
    """On PostgreSQL, every statement an erase runs on the table (the rows holding an edge character looked
    for, then the DELETE) can use the expression index docs/matching.md names: no full scan."""
    others = [f"user{i}@x.tr" for i in range(50)]
    seed(postgres_url, person_table(postgres_url), ["İlker@x.tr", "i̇lker@x.tr", "ilker@x.tr", *others])
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE INDEX person_value_fold ON person (lower(normalize(value, NFC)))")
        conn.exec_driver_sql("ANALYZE person")
    statements: list[tuple[str, object]] = []
    raw = {"name": "app", "kind": "sql", "url": postgres_url,
           "tables": [{"name": "person", "where": {"value": "email"}, "action": "delete"}]}
    with sql_connector(raw, FOLDS) as sql:
        sa.event.listen(sql.engine, "before_cursor_execute",
                        lambda _conn, _cursor, text, params, _context, _many: statements.append((text, params)))
        assert sql.erase(Subject({"email": (fold_text("İlker@x.tr", ("lower",)),)})).items_erased == 2
    on_person = [(text, params) for text, params in statements if "FROM person" in text]
    assert [text.split()[0] for text, _ in on_person] == ["SELECT", "DELETE"]
    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        plans = ["\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {text}", params))  # type: ignore[arg-type]
                 for text, params in on_person]
    engine.dispose()
    assert all("person_value_fold" in plan and "Seq Scan" not in plan for plan in plans), plans
