"""The sql connector against real SQLite, PostgreSQL and MariaDB databases."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.errors import ConfigError, PermanentError, TransientError
from connectors.sql.config import SqlConfig
from tests.helpers import system_config
from tests.helpers.sql_world import ITEMS, ORDERS, TABLES, USERS, connector, dump, key, subject


@pytest.fixture
def world(sql_url: str) -> Iterator[sa.Engine]:
    """users / orders / order_items with enforced foreign keys, filled with a few neighbours."""
    engine = sa.create_engine(sql_url)
    metadata = sa.MetaData()
    users = sa.Table("users", metadata, key(), sa.Column("email", sa.String(100)), mysql_engine="InnoDB")
    orders = sa.Table(
        "orders",
        metadata,
        key(),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id")),
        sa.Column("email", sa.String(100)),
        sa.Column("shipping_address", sa.String(100)),
        mysql_engine="InnoDB",
    )
    items = sa.Table(
        "order_items",
        metadata,
        key(),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id")),
        mysql_engine="InnoDB",
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(users.insert(), [{"id": i, "email": e} for i, e in USERS])
        rows = [{"id": i, "user_id": u, "email": e, "shipping_address": f"{i} Main St"} for i, u, e in ORDERS]
        conn.execute(orders.insert(), rows)
        conn.execute(items.insert(), [{"id": i, "order_id": o} for i, o in ITEMS])
    yield engine
    engine.dispose()


def test_erase_deletes_anonymizes_and_follows_references(world: sa.Engine, sql_url: str) -> None:
    """The user is deleted, their 2 orders anonymized and those orders' 3 items deleted; nothing else."""
    before = dump(world)
    with connector(sql_url) as sql:
        outcome = sql.erase(subject(user_id="42"))
    assert outcome.items_erased == 1 + 2 + 3
    assert outcome.evidence == {
        "tables": [
            {"table": "order_items", "action": "delete", "rows": 3},
            {"table": "orders", "action": "anonymize", "rows": 2},
            {"table": "users", "action": "delete", "rows": 1},
        ]
    }
    after = dump(world)
    assert after["users"] == [u for u in before["users"] if u[0] != 42]
    assert after["orders"] == [(1, None, "", ""), (2, None, "", ""), *before["orders"][2:]]
    assert after["order_items"] == [i for i in before["order_items"] if i[1] not in (1, 2)]


def test_second_erase_finds_nothing(world: sa.Engine, sql_url: str) -> None:
    """Erasing the same subject again changes no row and reports 0 items."""
    with connector(sql_url) as sql:
        sql.erase(subject(user_id="42"))
        before = dump(world)
        assert sql.erase(subject(user_id="42")).items_erased == 0
    assert dump(world) == before


def test_anonymize_skips_rows_already_anonymized(world: sa.Engine, sql_url: str) -> None:
    """An anonymize whose targets leave the rows matching updates 0 rows the second time."""
    tables = [{"name": "orders", "where": {"email": "email"}, "action": "anonymize", "set": {"shipping_address": ""}}]
    with connector(sql_url, tables) as sql:
        assert sql.erase(subject(email="a@b.c")).items_erased == 2
        assert sql.erase(subject(email="a@b.c")).items_erased == 0


def test_verify_counts_what_is_left(world: sa.Engine, sql_url: str) -> None:
    """verify() counts the subject's rows before erase and 0 after."""
    with connector(sql_url) as sql:
        assert sql.verify(subject(user_id="42")) == 1 + 2 + 3
        sql.erase(subject(user_id="42"))
        assert sql.verify(subject(user_id="42")) == 0


def test_integer_neighbours_are_untouched(world: sa.Engine, sql_url: str) -> None:
    """Subject 42 never touches user 4 or 420, nor their orders and items."""
    with connector(sql_url) as sql:
        sql.erase(subject(user_id="42"))
    after = dump(world)
    assert [u[0] for u in after["users"]] == [4, 5, 6, 420]
    assert [(o[0], o[1]) for o in after["orders"] if o[1] is not None] == [(3, 4), (4, 420)]


def test_string_neighbours_are_untouched(world: sa.Engine, sql_url: str) -> None:
    """An email of "a@b.c" anonymizes the orders with exactly that email, never "xa@b.c" or "a@b.c.d"."""
    tables = [{"name": "orders", "where": {"email": "email"}, "action": "anonymize", "set": {"email": "null"}}]
    with connector(sql_url, tables) as sql:
        assert sql.erase(subject(email="a@b.c")).items_erased == 2
    assert [o[2] for o in dump(world)["orders"]] == [None, None, "xa@b.c", "a@b.c.d"]


def test_text_matches_case_accents_and_trailing_spaces_exactly(world: sa.Engine, sql_url: str) -> None:
    """"q@r.s" never takes "Q@R.S" or "q@r.s ", nor "ä@r.s" "a@r.s", even under MariaDB's default
    collation, which compares without case or accents and pads trailing spaces."""
    with world.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO users (id, email) VALUES (7, 'Q@R.S'), (8, 'q@r.s '), (9, 'q@r.s'), (10, 'ä@r.s'), "
            "(11, 'a@r.s')"
        )
    tables = [{"name": "users", "where": {"email": "email"}, "action": "delete"}]
    with connector(sql_url, tables) as sql:
        assert sql.erase(subject(email="q@r.s")).items_erased == 1
        assert sql.erase(subject(email="ä@r.s")).items_erased == 1
        assert sql.verify(subject(email="Q@R.S")) == 1
    assert [u[0] for u in dump(world)["users"]] == [4, 5, 6, 7, 8, 11, 42, 420]


@pytest.mark.parametrize("value", ["%", "_", "*", "' OR 1=1 --", "42abc", "4 2", "042.0", "042", "0042", "-0", "+42"])
def test_odd_values_match_nothing(world: sa.Engine, sql_url: str, value: str) -> None:
    """Wildcards, quotes and values that only look like integers match no row."""
    before = dump(world)
    tables = [*TABLES, {"name": "users", "where": {"email": "email"}, "action": "delete"}]
    with connector(sql_url, tables) as sql:
        assert sql.erase(subject(user_id=value, email=value)).items_erased == 0
    assert dump(world) == before


def test_quote_in_value_matches_literally(world: sa.Engine, sql_url: str) -> None:
    """The email "o'brien@x.io" erases exactly that row and leaves "obrien@x.io"."""
    tables = [{"name": "users", "where": {"email": "email"}, "action": "delete"}]
    with connector(sql_url, tables) as sql:
        assert sql.erase(subject(email="o'brien@x.io")).items_erased == 1
    assert [u[1] for u in dump(world)["users"] if u[0] in (5, 6)] == ["obrien@x.io"]


def test_several_values_of_one_type_erase_all(world: sa.Engine, sql_url: str) -> None:
    """user_id 4 and 420 erase both users with their orders and items, and leave 42 alone."""
    before = dump(world)
    with connector(sql_url) as sql:
        assert sql.erase(subject(user_id=("4", "420"))).items_erased == 6
    after = dump(world)
    assert [u[0] for u in after["users"]] == [5, 6, 42]
    assert after["orders"][:2] == before["orders"][:2]
    assert after["order_items"] == before["order_items"][:3]


def test_many_values_are_chunked(world: sa.Engine, sql_url: str) -> None:
    """More values than one IN list holds still erase exactly the matching rows."""
    values = tuple(str(n) for n in range(1000, 2200)) + ("42",)
    with connector(sql_url) as sql:
        assert sql.erase(subject(user_id=values)).items_erased == 6
    assert [u[0] for u in dump(world)["users"]] == [4, 5, 6, 420]


def test_table_listed_twice_is_referenced_as_a_union(world: sa.Engine, sql_url: str) -> None:
    """A reference to a table listed twice follows the rows matched by either entry."""
    tables = [
        {"name": "orders", "where": {"user_id": "user_id"}, "action": "anonymize", "set": {"email": "null"}},
        {"name": "orders", "where": {"email": "email"}, "action": "anonymize", "set": {"email": "null"}},
        {"name": "order_items", "where": {"order_id": "orders.id"}, "action": "delete"},
    ]
    with connector(sql_url, tables) as sql:
        assert sql.erase(subject(user_id="4", email="a@b.c.d")).items_erased == 4
    assert [i[0] for i in dump(world)["order_items"]] == [1, 2, 3]


def test_foreign_key_violation_rolls_everything_back(world: sa.Engine, sql_url: str) -> None:
    """Deleting users whose orders still point at them fails for good and changes nothing."""
    tables = copy.deepcopy(TABLES)
    tables[1]["set"] = {"email": ""}  # orders keep user_id: the users row cannot go
    before = dump(world)
    with connector(sql_url, tables) as sql, pytest.raises(PermanentError) as caught:
        sql.erase(subject(user_id="42"))
    assert dump(world) == before
    assert "'app-db'" in str(caught.value) and "'users'" in str(caught.value)
    assert not re.search(r"(?<![\w.])42(?![\w.])", str(caught.value))  # the database's random name may hold "42"


def test_missing_table_is_permanent(world: sa.Engine, sql_url: str) -> None:
    """A listed table that does not exist fails for good, naming it."""
    tables = [*TABLES, {"name": "invoices", "where": {"user_id": "user_id"}, "action": "delete"}]
    with connector(sql_url, tables) as sql, pytest.raises(PermanentError, match="'invoices' does not exist"):
        sql.erase(subject(user_id="42"))


def test_missing_column_is_permanent(world: sa.Engine, sql_url: str) -> None:
    """A column that the table lacks fails for good, naming table and column."""
    tables = [{"name": "users", "where": {"user_uuid": "user_id"}, "action": "delete"}]
    with connector(sql_url, tables) as sql, pytest.raises(PermanentError, match="'users' has no column"):
        sql.verify(subject(user_id="42"))


def test_resolve_maps_values_through_the_query(world: sa.Engine, sql_url: str) -> None:
    """resolve() returns each row's first column as str, deduplicated, in first-seen order."""
    with connector(sql_url) as sql:
        found = sql.resolve("SELECT id FROM users WHERE email = :email", "email", ["a@b.c", "no@x", "xa@b.c", "a@b.c"])
    assert found == ["42", "4"]


def test_unreachable_server_is_transient() -> None:
    """A server that does not answer is a TransientError that carries no value."""
    with connector("postgresql+psycopg://postgres@127.0.0.1:1/x") as sql, pytest.raises(TransientError) as caught:
        sql.erase(subject(user_id="987654321"))
    assert "'app-db'" in str(caught.value) and "987654321" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_driver_error_quoting_a_value_does_not_leak_it(postgres_url: str) -> None:
    """PostgreSQL quotes a value it cannot cast; the error keeps the reason and drops the value."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE visits (address INET)")
    engine.dispose()
    tables = [{"name": "visits", "where": {"address": "email"}, "action": "delete"}]
    with connector(postgres_url, tables) as sql, pytest.raises(PermanentError) as caught:
        sql.erase(subject(email="bob@example.com"))
    assert "'visits'" in str(caught.value) and "invalid input syntax" in str(caught.value)
    assert "bob@example.com" not in str(caught.value)
    assert "[SQL" not in str(caught.value) and "parameters" not in str(caught.value)


def test_config_reads_tables_and_identifier_types() -> None:
    """A valid config gives its tables, references and the identifier types it matches on."""
    config = system_config(SqlConfig, {"name": "app-db", "kind": "sql", "url": "sqlite:///x.db", "tables": TABLES})
    assert [t.name for t in config.tables] == ["users", "orders", "order_items"]
    assert dict(config.tables[1].assign) == {"email": "", "shipping_address": "", "user_id": None}
    assert config.tables[2].where[0][1].table == "orders"
    assert config.identifier_types == {"user_id"}


def _broken(change: str) -> dict[str, Any]:
    """The valid config with one mistake."""
    raw: dict[str, Any] = {"name": "app-db", "kind": "sql", "url": "sqlite:///x.db", "tables": copy.deepcopy(TABLES)}
    tables = raw["tables"]
    if change == "unknown key":
        raw["tabels"] = []
    elif change == "unknown identifier":
        tables[0]["where"] = {"id": "phone"}
    elif change == "unlisted table":
        tables[2]["where"] = {"order_id": "invoices.id"}
    elif change == "anonymize without set":
        del tables[1]["set"]
    elif change == "bad action":
        tables[0]["action"] = "truncate"
    elif change == "delete with set":
        tables[0]["set"] = {"email": ""}
    elif change == "cycle":
        tables[1]["where"] = {"id": "order_items.order_id"}
    elif change == "odd column":
        tables[0]["where"] = {"id; DROP TABLE users": "user_id"}
    elif change == "empty where":
        tables[0]["where"] = {}
    return raw


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        ("unknown key", "tabels", "unknown key"),
        ("unknown identifier", "where.id", "unknown identifier type 'phone'"),
        ("unlisted table", "where.order_id", "reference to table 'invoices' which is not listed"),
        ("anonymize without set", "set", "missing"),
        ("bad action", "action", "must be 'delete', 'anonymize' or 'delete_unreferenced'"),
        ("delete with set", "set", "only an anonymize or delete_unreferenced action"),
        ("cycle", "tables", "reference cycle"),
        ("odd column", "where", "not a plain column name"),
        ("empty where", "where", "would match every row"),
    ],
)
def test_config_errors_name_file_system_and_key(change: str, key: str, problem: str) -> None:
    """Each mistake is a ConfigError naming the file, the system and the key."""
    with pytest.raises(ConfigError) as caught:
        system_config(SqlConfig, _broken(change))
    message = str(caught.value)
    assert message.startswith("erasure.toml: system 'app-db'")
    assert f": {key}: " in message and problem in message


@pytest.mark.parametrize(
    ("column", "value", "rows"),
    [
        ("amount", "42", 1),
        ("amount", "42.00", 0),  # one spelling a number: 42.00 is written 42 (as 042 is in an integer column)
        ("amount", "42abc", 0),
        ("day", "2024-01-02", 1),
        ("day", "2024-01-02abc", 0),
        ("token", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", 1),
        ("token", "not-a-uuid", 0),
    ],
)
def test_typed_columns_match_only_values_of_their_type(sql_url: str, column: str, value: str, rows: int) -> None:
    """Numeric, date and UUID columns match a value of their type, never one the engine would cast."""
    engine = sa.create_engine(sql_url)
    token = sa.Uuid if engine.dialect.name == "postgresql" else sa.String(36)
    metadata = sa.MetaData()
    ledger = sa.Table(
        "ledger",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("day", sa.Date),
        sa.Column("token", token),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        token_value = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        conn.execute(ledger.insert(), [{"id": 1, "amount": 42, "day": date(2024, 1, 2), "token": token_value}])
    engine.dispose()
    tables = [{"name": "ledger", "where": {column: "email"}, "action": "delete"}]
    with connector(sql_url, tables) as sql:
        assert sql.verify(subject(email=value)) == rows
        assert sql.erase(subject(email=value)).items_erased == rows
