"""The config file: a good one loads into frozen dataclasses; a bad one stops start-up with
one line naming the file, the system (or section) and the key."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.base import EnvSecret, Template
from connectors.s3.config import S3Config
from connectors.snapshot.connector import SnapshotConfig
from connectors.sql.config import Lookup, Reference, SqlConfig, SqlTable
from connectors.stub import StubConfig
from tests.helpers import stub, system_table, write_config
from worker.config import Config, Deadline, WorkerSettings, load, parse
from worker.errors import ConfigError, InputError
from worker.identifiers import IdentifierType, Resolver
from worker.surfaces.cli import main

PATH = Path("erasure.toml")
CONTRACT_EXAMPLE = """
store_url  = "sqlite:///erasure.db"
broker_url = "sqla+sqlite:///erasure-queue.db"
deadline_days = 30

[worker]
max_attempts  = 5
lease_seconds = 600

[identifiers]
user_id = { pattern = '^[0-9]{1,18}$' }
email   = { pattern = '^[^@\\s]+@[^@\\s]+$', normalize = "lower" }

[[resolvers]]
system = "app-db"
from   = "email"
to     = "user_id"
query  = "SELECT id FROM users WHERE email = :email"

[[systems]]
name = "app-db"
kind = "sql"
url  = "postgresql+psycopg://localhost/app"
  [[systems.tables]]
  name   = "users"
  where  = { id = "user_id" }
  action = "delete"
  [[systems.tables]]
  name   = "orders"
  where  = { user_id = "user_id" }
  action = "anonymize"
  set    = { email = "", shipping_address = "" }
  [[systems.tables]]
  name   = "order_items"
  where  = { order_id = "orders.id" }
  action = "delete"

[[systems]]
name   = "uploads"
kind   = "s3"
bucket = "user-uploads"
endpoint_url = "http://127.0.0.1:5000"
prefixes = ["avatars/{user_id}/"]
keys     = ["exports/{user_id}.zip"]

[[systems]]
name     = "clickstream"
kind     = "snapshot"
location = "ml-data/clickstream/"
format   = "parquet"
where    = { user_id = "user_id" }
"""


@pytest.fixture(autouse=True)
def no_url_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's environment must not override the URLs under test."""
    monkeypatch.delenv("ERASURE_STORE_URL", raising=False)
    monkeypatch.delenv("ERASURE_BROKER_URL", raising=False)


@pytest.fixture
def good_config() -> dict[str, Any]:
    """A valid decoded config, like the contract's, with sql, s3, snapshot and stub systems."""
    return {
        "store_url": "postgresql+psycopg://db.internal/erasure",
        "broker_url": "amqp://guest:guest@mq.internal:5672//",
        "deadline_days": 30,
        "worker": {"max_attempts": 4, "lease_seconds": 300},
        "identifiers": {
            "user_id": {"pattern": "^[0-9]{1,18}$"},
            "email": {"pattern": r"^[^@\s]+@[^@\s]+$", "normalize": "lower"},
        },
        "resolvers": [
            {"system": "app-db", "from": "email", "to": "user_id",
             "query": "SELECT id FROM users WHERE email = :email"},
        ],
        "systems": [
            {"name": "app-db", "kind": "sql", "url": "postgresql+psycopg://localhost/app", "tables": [
                {"name": "users", "where": {"id": "user_id"}, "action": "delete"},
                {"name": "orders", "where": {"user_id": "user_id"}, "action": "anonymize",
                 "set": {"email": "", "shipping_address": "null"}},
                {"name": "order_items", "where": {"order_id": "orders.id"}, "action": "delete"},
            ]},
            {"name": "uploads", "kind": "s3", "bucket": "user-uploads", "endpoint_url": "http://127.0.0.1:5000",
             "prefixes": ["avatars/{user_id}/"], "keys": ["exports/{user_id}.zip"]},
            {"name": "clickstream", "kind": "snapshot", "location": "/data/clickstream", "format": "parquet",
             "where": {"user_id": "user_id"}},
            {"name": "crm", "kind": "stub", "uses": ["email"]},
            {"name": "billing", "kind": "stub", "uses": ["user_id", "email"], "items": 3},
        ],
    }


def system(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The raw `[[systems]]` table of that name."""
    return next(s for s in config["systems"] if s["name"] == name)


def refused(raw: dict[str, Any], *names: str) -> str:
    """Parse a bad config; assert a one-line ConfigError naming the file and each of `names`."""
    with pytest.raises(ConfigError) as caught:
        parse(raw, PATH)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"{PATH}: "), message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    return message


# --- a good config ---------------------------------------------------------------------------


def test_good_config_loads_top_level_settings(good_config: dict[str, Any]) -> None:
    """The URLs, the deadline and the worker settings are read as given."""
    config = parse(good_config, PATH)
    assert isinstance(config, Config)
    assert config.path == PATH
    assert config.store_url == "postgresql+psycopg://db.internal/erasure"
    assert config.broker_url == "amqp://guest:guest@mq.internal:5672//"
    assert config.deadline == Deadline(30, "days")
    assert config.worker == WorkerSettings(max_attempts=4, lease_seconds=300)


def test_good_config_loads_identifier_types(good_config: dict[str, Any]) -> None:
    """Each identifier type keeps its compiled pattern and its normalization."""
    identifiers = parse(good_config, PATH).identifiers
    assert set(identifiers) == {"user_id", "email"}
    assert identifiers["user_id"].pattern.pattern == "^[0-9]{1,18}$"
    assert identifiers["user_id"].normalize == "none"
    assert identifiers["email"].normalize == "lower"
    assert identifiers["email"].clean("Bob@Example.COM") == "bob@example.com"


def test_good_config_loads_resolvers(good_config: dict[str, Any]) -> None:
    """A resolver keeps its system and its from and to types; its plain query becomes a lookup folded as email is."""
    assert parse(good_config, PATH).resolvers == (
        Resolver("app-db", "email", "user_id", Lookup("users", "email", "id", ("lower",))),
    )


def test_good_config_loads_each_kind_into_its_dataclass(good_config: dict[str, Any]) -> None:
    """Systems keep their order and each becomes its kind's config class."""
    config = parse(good_config, PATH)
    assert [(s.name, s.kind, type(s)) for s in config.systems] == [
        ("app-db", "sql", SqlConfig),
        ("uploads", "s3", S3Config),
        ("clickstream", "snapshot", SnapshotConfig),
        ("crm", "stub", StubConfig),
        ("billing", "stub", StubConfig),
    ]


def test_good_sql_system_reads_tables_references_and_null(good_config: dict[str, Any]) -> None:
    """A sql system reads its tables in order; `table.column` is a reference and "null" is None."""
    sql = parse(good_config, PATH).system("app-db")
    assert isinstance(sql, SqlConfig)
    assert sql.url == "postgresql+psycopg://localhost/app"
    assert sql.tables == (
        SqlTable("users", (("id", Reference(identifier="user_id")),), "delete"),
        SqlTable("orders", (("user_id", Reference(identifier="user_id")),), "anonymize",
                 (("email", ""), ("shipping_address", None))),
        SqlTable("order_items", (("order_id", Reference(table="orders", column="id")),), "delete"),
    )
    assert sql.identifier_types == frozenset({"user_id"})


def test_good_s3_system_reads_templates(good_config: dict[str, Any]) -> None:
    """An s3 system reads its bucket, endpoint and its prefixes and keys as templates."""
    s3 = parse(good_config, PATH).system("uploads")
    assert isinstance(s3, S3Config)
    assert (s3.bucket, s3.endpoint_url, s3.region) == ("user-uploads", "http://127.0.0.1:5000", None)
    assert [t.text for t in s3.prefixes] == ["avatars/{user_id}/"]
    assert [t.text for t in s3.keys] == ["exports/{user_id}.zip"]
    assert all(isinstance(t, Template) for t in s3.prefixes + s3.keys)
    assert s3.identifier_types == frozenset({"user_id"})


def test_good_snapshot_system_reads_location_format_and_where(good_config: dict[str, Any]) -> None:
    """A snapshot system reads its location, format and `where` columns."""
    assert parse(good_config, PATH).system("clickstream") == SnapshotConfig(
        name="clickstream", kind="snapshot", location="/data/clickstream", format="parquet",
        where=(("user_id", "user_id"),), endpoint_url=None,
    )


def test_good_stub_systems_read_uses_and_knobs(good_config: dict[str, Any]) -> None:
    """A stub system reads the identifier types it uses and its knobs, defaulting the rest."""
    config = parse(good_config, PATH)
    assert config.system("billing") == StubConfig(name="billing", kind="stub", uses=("user_id", "email"), items=3)
    assert config.system("crm").identifier_types == frozenset({"email"})


def test_config_and_its_parts_are_frozen(good_config: dict[str, Any]) -> None:
    """No part of a loaded config can be changed after start-up."""
    config = parse(good_config, PATH)
    parts: list[Any] = [config, config.deadline, config.worker, config.identifiers["user_id"],
                        config.resolvers[0], *config.systems, *config.system("app-db").tables]  # type: ignore[attr-defined]
    for part in parts:
        assert dataclasses.is_dataclass(part)
        field = dataclasses.fields(part)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(part, field, None)


def test_defaults_when_optional_keys_are_absent(good_config: dict[str, Any]) -> None:
    """Without deadline or [worker], the deadline is 30 days and the worker settings default."""
    del good_config["deadline_days"], good_config["worker"]
    config = parse(good_config, PATH)
    assert config.deadline == Deadline(30, "days")
    assert config.worker == WorkerSettings()


# --- systems ---------------------------------------------------------------------------------


def test_unknown_kind_is_refused(good_config: dict[str, Any]) -> None:
    """A kind not in the registry names the system and `kind`, and lists the known kinds."""
    system(good_config, "crm")["kind"] = "mongodb"
    message = refused(good_config, "system 'crm'", "kind", "mongodb")
    assert "sql" in message and "s3" in message


def test_sql_system_without_url_is_refused(good_config: dict[str, Any]) -> None:
    """A sql system must give its url."""
    del system(good_config, "app-db")["url"]
    refused(good_config, "system 'app-db'", "url", "missing")


def test_system_without_name_is_refused(good_config: dict[str, Any]) -> None:
    """A system without a name is named by its position and the key `name`."""
    del good_config["systems"][2]["name"]
    refused(good_config, "systems[2]", "name")


def test_system_without_kind_is_refused(good_config: dict[str, Any]) -> None:
    """A system must say its kind."""
    del system(good_config, "crm")["kind"]
    refused(good_config, "system 'crm'", "kind", "missing")


def test_two_systems_with_one_name_are_refused(good_config: dict[str, Any]) -> None:
    """System names are unique: the second one with a taken name is refused."""
    system(good_config, "billing")["name"] = "crm"
    refused(good_config, "system 'crm'", "name", "two systems")


def test_no_systems_is_refused(good_config: dict[str, Any]) -> None:
    """A config with no system would erase nothing: it is refused."""
    good_config["systems"] = []
    del good_config["resolvers"]
    refused(good_config, "top level", "systems")


def test_unknown_key_in_a_system_is_refused(good_config: dict[str, Any]) -> None:
    """A typo in a system's keys is not ignored silently."""
    system(good_config, "uploads")["prefixs"] = ["old/{user_id}/"]
    refused(good_config, "system 'uploads'", "prefixs", "unknown key")


def test_unknown_key_in_a_sql_table_is_refused(good_config: dict[str, Any]) -> None:
    """A typo in a sql table (`wehre`) is not ignored silently."""
    system(good_config, "app-db")["tables"][1]["wehre"] = {"id": "user_id"}
    refused(good_config, "system 'app-db' tables[1]", "wehre", "unknown key")


def test_unknown_top_level_key_is_refused(good_config: dict[str, Any]) -> None:
    """A typo at the top level (`deadline_day`) is not ignored silently."""
    good_config["deadline_day"] = 10
    refused(good_config, "top level", "deadline_day", "unknown key")


def test_unknown_key_in_worker_is_refused(good_config: dict[str, Any]) -> None:
    """A typo in [worker] (`max_attempt`) is not ignored silently."""
    good_config["worker"]["max_attempt"] = 2
    refused(good_config, "worker", "max_attempt", "unknown key")


@pytest.mark.parametrize("key, value, problem", [
    ("batch_size", 0, "between 1 and 100000"),
    ("batch_size", 100_001, "between 1 and 100000"),
    ("batch_wait_seconds", -1, "between 0 and 60"),
    ("batch_wait_seconds", 400, "between 0 and 60"),
    ("group_size", 0, "between 1 and 1000"),
    ("group_size", 1001, "between 1 and 1000"),
    ("group_size", "50", "must be"),
    ("snapshot_part_mb", -1, "between 0 (a part per file) and 1000000"),
    ("snapshot_part_mb", "128", "must be"),
])
def test_batch_bounds_out_of_range_are_refused(good_config: dict[str, Any], key: str, value: int, problem: str) -> None:
    """A batch size, wait or group size out of range (or not a number) stops start-up, naming the key."""
    good_config["worker"][key] = value
    refused(good_config, "worker", key, problem)


def test_batch_wait_must_be_well_under_the_lease(good_config: dict[str, Any]) -> None:
    """A batch wait of half the lease or more could let the lease of the first request run out while it waits."""
    good_config["worker"].update(lease_seconds=60, batch_wait_seconds=30)
    refused(good_config, "worker", "batch_wait_seconds", "half of lease_seconds")


def test_sql_where_naming_an_unknown_identifier_type_is_refused(good_config: dict[str, Any]) -> None:
    """A `where` column must refer to a declared identifier type."""
    system(good_config, "app-db")["tables"][0]["where"] = {"id": "customer_id"}
    refused(good_config, "system 'app-db' tables[0]", "where.id", "customer_id")


def test_snapshot_where_naming_an_unknown_identifier_type_is_refused(good_config: dict[str, Any]) -> None:
    """A snapshot's `where` must refer to a declared identifier type."""
    system(good_config, "clickstream")["where"] = {"user_id": "uid"}
    refused(good_config, "system 'clickstream'", "where.user_id", "'uid'")


def test_stub_using_an_unknown_identifier_type_is_refused(good_config: dict[str, Any]) -> None:
    """A stub's `uses` must name declared identifier types."""
    system(good_config, "crm")["uses"] = ["phone"]
    refused(good_config, "system 'crm'", "uses", "'phone'")


def test_sql_where_that_matches_every_row_is_refused(good_config: dict[str, Any]) -> None:
    """An empty `where` would match every row of the table: refused."""
    system(good_config, "app-db")["tables"][0]["where"] = {}
    refused(good_config, "system 'app-db' tables[0]", "where", "every row")


def test_reference_to_an_unlisted_table_is_refused(good_config: dict[str, Any]) -> None:
    """`table.column` may only refer to a table listed in the same system."""
    system(good_config, "app-db")["tables"][2]["where"] = {"order_id": "invoices.id"}
    refused(good_config, "system 'app-db' tables[2]", "where.order_id", "'invoices'", "not listed")


def test_template_naming_an_unknown_identifier_type_is_refused(good_config: dict[str, Any]) -> None:
    """A placeholder must be a declared identifier type."""
    system(good_config, "uploads")["keys"] = ["exports/{customer}.zip"]
    refused(good_config, "system 'uploads'", "keys[0]", "'customer'")


@pytest.mark.parametrize("key, template", [("prefixes", "avatars/"), ("keys", "exports/all.zip")])
def test_template_without_a_placeholder_is_refused(good_config: dict[str, Any], key: str, template: str) -> None:
    """A prefix or key without a placeholder would match every subject: refused."""
    system(good_config, "uploads")[key] = [template]
    refused(good_config, "system 'uploads'", f"{key}[0]", "every subject")


@pytest.mark.parametrize("template", ["avatars/{user_id!r}/", "avatars/{user_id:>5}/", "avatars/{0}/", "a/{}/"])
def test_template_placeholder_must_be_a_plain_name(good_config: dict[str, Any], template: str) -> None:
    """Conversions, format specs and positional fields are not placeholders."""
    system(good_config, "uploads")["prefixes"] = [template]
    refused(good_config, "system 'uploads'", "prefixes[0]")


def test_prefix_without_trailing_slash_is_refused(good_config: dict[str, Any]) -> None:
    """`avatars/{user_id}` would also match user 420's objects for user 42: refused."""
    system(good_config, "uploads")["prefixes"] = ["avatars/{user_id}"]
    refused(good_config, "system 'uploads'", "prefixes[0]", "must end with '/'")


def test_snapshot_location_must_be_a_local_folder(good_config: dict[str, Any]) -> None:
    """A snapshot location with another scheme than a local path is refused at start-up."""
    system(good_config, "clickstream")["location"] = "gs://ml-data/clickstream/"
    refused(good_config, "system 'clickstream'", "location")


# --- identifiers -----------------------------------------------------------------------------


def test_pattern_that_is_not_a_regex_is_refused(good_config: dict[str, Any]) -> None:
    """An invalid regular expression names the identifier type and `pattern`."""
    good_config["identifiers"]["user_id"]["pattern"] = "^[0-9{1,18}$"
    refused(good_config, "identifiers user_id", "pattern", "regular expression")


def test_identifier_without_pattern_is_refused(good_config: dict[str, Any]) -> None:
    """Every identifier type must give its pattern."""
    del good_config["identifiers"]["email"]["pattern"]
    refused(good_config, "identifiers email", "pattern", "missing")


@pytest.mark.parametrize("normalize", ["title", "LOWER", 1, [], ["lower", "upper"], ["trim", "trim"],
                                       ["none", "lower"], ["trim", 1]])
def test_bad_normalize_is_refused(good_config: dict[str, Any], normalize: Any) -> None:
    """`normalize` is "none", or steps among trim, lower, upper, each once, lower and upper not both."""
    good_config["identifiers"]["email"]["normalize"] = normalize
    refused(good_config, "identifiers email", "normalize")


@pytest.mark.parametrize(("normalize", "fold"), [("none", ()), ("trim", ("trim",)),
                                                 (["lower", "trim"], ("trim", "lower")), (["upper"], ("upper",))])
def test_normalize_steps_are_read_in_their_fixed_order(good_config: dict[str, Any], normalize: Any,
                                                       fold: tuple[str, ...]) -> None:
    """Steps are applied trim first, then lower or upper, however the list orders them."""
    good_config["identifiers"]["email"]["normalize"] = normalize
    assert parse(good_config, PATH).identifiers["email"].fold == fold


def test_trim_removes_outer_whitespace_never_inner() -> None:
    """trim takes spaces off both ends (then lower applies); an inner space stays and fails the pattern."""
    email = IdentifierType("email", re.compile(r"^[^@\s]+@[^@\s]+$"), ("trim", "lower"))
    assert email.clean("  Mary.Smith@X.org ") == "mary.smith@x.org"
    with pytest.raises(InputError):
        email.clean("Mary. Smith@x.org")


def test_a_value_empty_once_trimmed_is_refused() -> None:
    """A value of spaces alone, trimmed, is empty: refused, never a match for every empty column."""
    code = IdentifierType("code", re.compile(r".*"), ("trim",))
    with pytest.raises(InputError, match="empty once normalized"):
        code.clean("   ")


def test_values_are_nfc_normalized_before_anything_else() -> None:
    """A decomposed `é` is the composed one, with normalize = "none" too."""
    name = IdentifierType("name", re.compile(r"^\w+$"))
    assert name.clean("Jose\u0301") == "Jos\u00e9"


def test_unknown_key_in_an_identifier_is_refused(good_config: dict[str, Any]) -> None:
    """A typo in an identifier type (`normalise`) is not ignored silently."""
    good_config["identifiers"]["email"]["normalise"] = "lower"
    refused(good_config, "identifiers email", "normalise", "unknown key")


def test_no_identifier_types_is_refused(good_config: dict[str, Any]) -> None:
    """A config must declare at least one identifier type."""
    good_config["identifiers"] = {}
    refused(good_config, "top level", "identifiers")


# --- resolvers -------------------------------------------------------------------------------


def test_a_resolver_query_that_compares_a_folded_value_unfolded_is_refused(good_config: dict[str, Any]) -> None:
    """email is lowered: a query comparing it byte for byte with the stored side would miss `MARY@X`."""
    good_config["resolvers"][0]["query"] = "SELECT id FROM users u WHERE u.email = :email"
    refused(good_config, "resolvers[0]", "query", "lower(column) = :email")


def test_a_resolver_query_that_folds_the_stored_side_is_kept(good_config: dict[str, Any]) -> None:
    """A query with lower() on the stored side is run as written."""
    query = "SELECT u.id FROM users u WHERE lower(u.email) = :email"
    good_config["resolvers"][0]["query"] = query
    assert parse(good_config, PATH).resolvers[0].query == query


def test_a_resolver_query_on_a_column_stored_folded_may_say_exact(good_config: dict[str, Any]) -> None:
    """`match = "exact"` keeps a query that compares as stored, and a lookup that does not fold."""
    good_config["resolvers"][0]["query"] = "SELECT u.id FROM users u WHERE u.email = :email"
    good_config["resolvers"][0]["match"] = "exact"
    assert parse(good_config, PATH).resolvers[0].query == "SELECT u.id FROM users u WHERE u.email = :email"
    good_config["resolvers"][0]["query"] = "SELECT id FROM users WHERE email = :email"
    assert parse(good_config, PATH).resolvers[0].query == Lookup("users", "email", "id", ("lower",), exact=True)


def test_a_resolver_written_as_names_is_a_lookup(good_config: dict[str, Any]) -> None:
    """table, column and select make a lookup folded as the from type is."""
    del good_config["resolvers"][0]["query"]
    good_config["resolvers"][0].update(table="crm.users", column="email", select="id")
    assert parse(good_config, PATH).resolvers[0].query == Lookup("crm.users", "email", "id", ("lower",))


@pytest.mark.parametrize(("key", "value"), [("table", "users; DROP TABLE users"), ("column", "lower(email)"),
                                            ("select", "*")])
def test_a_resolver_lookup_takes_plain_names_only(good_config: dict[str, Any], key: str, value: str) -> None:
    """A lookup's names are plain names: nothing else reaches the SQL erasure writes."""
    del good_config["resolvers"][0]["query"]
    good_config["resolvers"][0].update(table="users", column="email", select="id")
    good_config["resolvers"][0][key] = value
    refused(good_config, "resolvers[0]", key)


def test_a_resolver_has_a_query_or_names_not_both(good_config: dict[str, Any]) -> None:
    """A query beside table, column and select is refused: which one runs would be a guess."""
    good_config["resolvers"][0].update(table="users", column="email", select="id")
    refused(good_config, "resolvers[0]", "not both")


@pytest.mark.parametrize("target", ["no-such-db", "crm"])
def test_resolver_must_name_a_sql_system(good_config: dict[str, Any], target: str) -> None:
    """A resolver naming an unknown system, or a system that is not sql, is refused."""
    good_config["resolvers"][0]["system"] = target
    refused(good_config, "resolvers[0]", "system", repr(target))


def test_resolver_query_must_bind_its_from_type(good_config: dict[str, Any]) -> None:
    """A resolver query that does not use `:from` could not be bound to the subject: refused."""
    good_config["resolvers"][0]["query"] = "SELECT id FROM users WHERE email = :mail"
    refused(good_config, "resolvers[0]", "query", ":email")


def test_resolver_query_with_a_longer_parameter_name_is_refused(good_config: dict[str, Any]) -> None:
    """`:email_address` is not `:email`."""
    good_config["resolvers"][0]["query"] = "SELECT id FROM users WHERE email = :email_address"
    refused(good_config, "resolvers[0]", "query")


@pytest.mark.parametrize("key", ["from", "to"])
def test_resolver_with_an_unknown_identifier_type_is_refused(good_config: dict[str, Any], key: str) -> None:
    """A resolver's `from` and `to` are declared identifier types."""
    good_config["resolvers"][0][key] = "phone"
    refused(good_config, "resolvers[0]", key, "'phone'")


def test_unknown_key_in_a_resolver_is_refused(good_config: dict[str, Any]) -> None:
    """A typo in a resolver (`sytem`) is not ignored silently."""
    good_config["resolvers"][0]["sytem"] = "app-db"
    refused(good_config, "resolvers[0]", "sytem", "unknown key")


# --- deadline --------------------------------------------------------------------------------


def test_deadline_and_deadline_days_together_are_refused(good_config: dict[str, Any]) -> None:
    """Only one of deadline and deadline_days may be set."""
    good_config["deadline"] = "1 month"
    refused(good_config, "top level", "deadline", "not both")


@pytest.mark.parametrize("text, expected", [
    ("1 month", Deadline(1, "months")), ("2 months", Deadline(2, "months")),
    ("30 days", Deadline(30, "days")), ("1 day", Deadline(1, "days")),
])
def test_deadline_text_is_read(good_config: dict[str, Any], text: str, expected: Deadline) -> None:
    """`deadline` is a number of days or calendar months."""
    del good_config["deadline_days"]
    good_config["deadline"] = text
    assert parse(good_config, PATH).deadline == expected


@pytest.mark.parametrize("text", ["1 fortnight", "month", "0 days", "-1 month", "1.5 months", ""])
def test_bad_deadline_text_is_refused(good_config: dict[str, Any], text: str) -> None:
    """A deadline that is not "N days" or "N months" is refused."""
    del good_config["deadline_days"]
    good_config["deadline"] = text
    refused(good_config, "top level", "deadline")


@pytest.mark.parametrize("days", [0, 93, True, "30"])
def test_bad_deadline_days_is_refused(good_config: dict[str, Any], days: Any) -> None:
    """deadline_days is a whole number between 1 and 92."""
    good_config["deadline_days"] = days
    refused(good_config, "top level", "deadline_days")


@pytest.mark.parametrize("received, expected", [
    (datetime(2025, 1, 31, 10, 0, tzinfo=UTC), datetime(2025, 2, 28, 10, 0, tzinfo=UTC)),
    (datetime(2024, 1, 31, 10, 0, tzinfo=UTC), datetime(2024, 2, 29, 10, 0, tzinfo=UTC)),
    (datetime(2025, 3, 31, 23, 59, tzinfo=UTC), datetime(2025, 4, 30, 23, 59, tzinfo=UTC)),
    (datetime(2025, 12, 15, 8, 0, tzinfo=UTC), datetime(2026, 1, 15, 8, 0, tzinfo=UTC)),
])
def test_one_month_is_a_calendar_month_clamped_to_month_end(received: datetime, expected: datetime) -> None:
    """Jan 31 + 1 month is Feb 28 (Feb 29 in a leap year); December rolls into January."""
    assert Deadline(1, "months").after(received) == expected


def test_two_months_from_december_31_is_end_of_february() -> None:
    """Dec 31 + 2 months is the last day of the next February."""
    assert Deadline(2, "months").after(datetime(2023, 12, 31, tzinfo=UTC)) == datetime(2024, 2, 29, tzinfo=UTC)


def test_days_deadline_adds_days() -> None:
    """A deadline in days is that many whole days later."""
    received = datetime(2025, 1, 31, 10, 0, tzinfo=UTC)
    assert Deadline(30, "days").after(received) == received + timedelta(days=30)


# --- identifier values -----------------------------------------------------------------------


def test_value_with_a_trailing_newline_is_refused() -> None:
    """A pattern ending in `$` does not let "42\\n" through (`$` matches before a final newline)."""
    user_id = IdentifierType("user_id", re.compile("^[0-9]{1,18}$"))
    with pytest.raises(InputError):
        user_id.clean("42\n")


def test_empty_value_is_refused_even_by_a_pattern_that_allows_it() -> None:
    """An empty value never passes, even for a pattern like `.*`."""
    anything = IdentifierType("anything", re.compile(".*"))
    with pytest.raises(InputError, match="empty"):
        anything.clean("")


@pytest.mark.parametrize("value", ["42abc", "abc42", "42 OR 1=1"])
def test_unanchored_pattern_must_match_the_whole_value(value: str) -> None:
    """A pattern written without ^ and $ still has to match the whole value, not a part of it."""
    user_id = IdentifierType("user_id", re.compile("[0-9]{1,18}"))
    assert user_id.clean("42") == "42"
    with pytest.raises(InputError):
        user_id.clean(value)


# --- files and the environment ---------------------------------------------------------------


def test_missing_config_file_names_the_file(tmp_path: Path) -> None:
    """A config file that does not exist is a one-line ConfigError naming it."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    """A TOML syntax error is a one-line ConfigError naming the file and the line."""
    path = tmp_path / "erasure.toml"
    path.write_text('store_url = "sqlite:///x.db"\ndeadline_days = \n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "line 2" in message and "\n" not in message


def test_contract_example_file_loads(tmp_path: Path) -> None:
    """The contract's example erasure.toml loads (its snapshot location a local folder)."""
    path = tmp_path / "erasure.toml"
    path.write_text(CONTRACT_EXAMPLE)
    config = load(path)
    assert [(s.name, s.kind) for s in config.systems] == [("app-db", "sql"), ("uploads", "s3"),
                                                          ("clickstream", "snapshot")]
    assert config.worker == WorkerSettings(max_attempts=5, lease_seconds=600)
    assert config.identifiers["email"].pattern.pattern == r"^[^@\s]+@[^@\s]+$"
    assert config.resolvers == (Resolver("app-db", "email", "user_id", Lookup("users", "email", "id", ("lower",))),)
    assert config.system("app-db").tables[1].assign == (("email", ""), ("shipping_address", ""))  # type: ignore[attr-defined]


def test_errors_from_a_file_name_that_file(tmp_path: Path) -> None:
    """A validation error from load() names the file it read."""
    (tmp_path / "conf").mkdir()
    path = write_config(tmp_path / "conf", stub("crm", colour="red"), name="prod.toml")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}: system 'crm': colour: ")


def test_relative_sqlite_urls_resolve_beside_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sqlite:///state.db` is beside the config file, wherever the process runs."""
    folder = tmp_path / "conf"
    folder.mkdir()
    path = write_config(folder, stub("crm"), store_url="sqlite:///state.db", broker_url="sqla+sqlite:///queue.db")
    monkeypatch.chdir(tmp_path)
    config = load(path)
    assert config.store_url == f"sqlite:///{folder.resolve()}/state.db"
    assert config.broker_url == f"sqla+sqlite:///{folder.resolve()}/queue.db"


@pytest.mark.parametrize("url", ["sqlite:////var/lib/erasure/state.db", "sqlite:///:memory:",
                                 "postgresql+psycopg://db/erasure"])
def test_absolute_and_server_store_urls_are_kept(good_config: dict[str, Any], url: str) -> None:
    """Absolute SQLite paths, in-memory SQLite and server URLs are used as written."""
    good_config["store_url"] = url
    assert parse(good_config, PATH).store_url == url


def test_environment_overrides_the_config_urls(good_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """$ERASURE_STORE_URL and $ERASURE_BROKER_URL win over the config's URLs."""
    monkeypatch.setenv("ERASURE_STORE_URL", "postgresql+psycopg://override/erasure")
    monkeypatch.setenv("ERASURE_BROKER_URL", "redis://override:6379/0")
    config = parse(good_config, PATH)
    assert config.store_url == "postgresql+psycopg://override/erasure"
    assert config.broker_url == "redis://override:6379/0"


def test_default_urls_without_config_or_environment(good_config: dict[str, Any]) -> None:
    """Without URLs in the config or the environment, SQLite files beside the config are used."""
    del good_config["store_url"], good_config["broker_url"]
    config = parse(good_config, Path("/etc/erasure/erasure.toml"))
    assert config.store_url == "sqlite:////etc/erasure/erasure.db"
    assert config.broker_url == "sqla+sqlite:////etc/erasure/erasure-queue.db"


UNSET = {"secret": "ERASURE_TEST_UNSET_SIGNING", "token": "ERASURE_TEST_UNSET_TOKEN",
         "redis": "ERASURE_TEST_UNSET_REDIS_URL", "qdrant": "ERASURE_TEST_UNSET_QDRANT_KEY"}


@pytest.fixture
def secretless_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config with an http, a redis (url_env) and a qdrant (api_key_env) system, none of whose
    variables is set in this process."""
    for variable in UNSET.values():
        monkeypatch.delenv(variable, raising=False)
    return write_config(tmp_path, system_table(
        "billing", "http", url="https://billing.internal/users/{user_id}", secret_env=UNSET["secret"],
        headers={"Authorization": {"env": UNSET["token"], "prefix": "Bearer "}},
    ) + system_table("cache", "redis", url_env=UNSET["redis"], keys=["s:{user_id}"]) + system_table(
        "search", "vector", backend="qdrant", url="https://qdrant.internal:6333", api_key_env=UNSET["qdrant"],
        collection="docs", where={"user_id": "user_id"}))


def test_a_config_loads_without_its_connectors_secrets(secretless_config: Path) -> None:
    """Secrets are named at load and read when a system is erased: the config loads with none of the
    http, redis and vector variables set, each system holding only the variable's name."""
    config = load(secretless_config)
    assert config.system("billing").secret == EnvSecret(UNSET["secret"])  # type: ignore[attr-defined]
    assert config.system("cache").url == EnvSecret(UNSET["redis"])  # type: ignore[attr-defined]
    assert config.system("search").api_key == EnvSecret(UNSET["qdrant"])  # type: ignore[attr-defined]


def test_read_only_commands_run_without_the_connectors_secrets(
        secretless_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`submit`, `status --json` and `list --json` work in a process that holds none of the systems' secrets."""
    assert main(["submit", "--config", str(secretless_config), "--subject", "user_id=42", "--json"]) == 0
    request_id = json.loads(capsys.readouterr().out)["request_id"]
    assert main(["status", request_id, "--config", str(secretless_config), "--json"]) == 0
    systems = json.loads(capsys.readouterr().out)["systems"]
    assert sorted(s["system"] for s in systems) == ["billing", "cache", "search"]
    assert main(["list", "--config", str(secretless_config), "--json"]) == 0
    assert [r["request_id"] for r in json.loads(capsys.readouterr().out)] == [request_id]
