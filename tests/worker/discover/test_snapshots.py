"""`erasure discover` on snapshot locations: Parquet, JSON lines (nested fields), CSV and Delta read for
their schemas and first rows, a `kind = "snapshot"` system drafted where a column holds an identifier
type (the draft loads, and erases), the location risk-listed where none does."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import ListDispatch, drain
from worker.config import load
from worker.discover.draft import render
from worker.discover.identifiers import identifier_types
from worker.discover.run import discover
from worker.engine import intake
from worker.errors import ErasureError
from worker.runtime import Runtime
from worker.surfaces import views

CLICKS = pa.table({"user_id": pa.array([7, 8, 9], pa.int64()), "email": ["a@x.org", "b@x.org", "c@x.org"],
                   "url": ["/a", "/b", "/c"]})


def draft(*snapshots: tuple[str, str]) -> str:
    """The draft for snapshot locations alone, with the default identifier types."""
    return render(discover([], list(snapshots), identifier_types([], {})))


def parquet_location(root: Path) -> Path:
    """A location of two Parquet snapshots."""
    for snapshot in ("2026-01-01", "2026-02-01"):
        (root / snapshot).mkdir(parents=True)
        pq.write_table(CLICKS, root / snapshot / "part-0.parquet")
    return root


def test_a_parquet_location_gets_a_snapshot_system_keyed_by_user_id(tmp_path: Path) -> None:
    """user_id (a key type) is preferred to email for `where`; the other identifier column is mentioned."""
    text = draft((str(parquet_location(tmp_path / "clicks")), "parquet"))
    system = tomllib.loads(text)["systems"][0]
    assert (system["kind"], system["format"], system["where"]) == ("snapshot", "parquet", {"user_id": "user_id"})
    assert "also holds email in email" in text


def test_a_parquet_draft_loads_and_erases_a_subjects_rows(tmp_path: Path) -> None:
    """Erasing user 8 with the drafted system removes their rows from every snapshot and keeps the others."""
    location = parquet_location(tmp_path / "clicks")
    path = tmp_path / "erasure.toml"
    path.write_text(draft((str(location), "parquet")) + "\n[worker]\nbatch_wait_seconds = 0\n")  # no batch to wait for
    rt = Runtime(load(path), dispatch=ListDispatch())
    try:
        request_id = intake.submit(rt, {"user_id": "8"}).request_id
        drain(rt)
        assert views.status(rt, request_id)["status"] == "completed"
    finally:
        rt.close()
    for snapshot in ("2026-01-01", "2026-02-01"):
        assert pq.read_table(location / snapshot / "part-0.parquet").column("user_id").to_pylist() == [7, 9]


def test_nested_json_lines_fields_are_named_by_path(tmp_path: Path) -> None:
    """An email inside `meta` in JSON lines gives `where = { "meta.email" = "email" }`, and the draft loads."""
    (tmp_path / "events" / "s1").mkdir(parents=True)
    lines = [{"event": "open", "meta": {"email": f"p{i}@x.org", "ip": "10.0.0.1"}} for i in range(3)]
    (tmp_path / "events" / "s1" / "a.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    text = draft((str(tmp_path / "events"), "jsonl"))
    assert tomllib.loads(text)["systems"][0]["where"] == {"meta.email": "email"}
    (tmp_path / "erasure.toml").write_text(text)
    assert load(tmp_path / "erasure.toml").systems[0].identifier_types == frozenset({"email"})


def test_a_location_without_an_identifier_column_is_risk_listed(tmp_path: Path) -> None:
    """A CSV location holding only IP addresses gets no system, and its ip column is on the risk list."""
    (tmp_path / "logs" / "s1").mkdir(parents=True)
    (tmp_path / "logs" / "s1" / "a.csv").write_text("client_ip;path\n10.0.0.1;/a\n10.0.0.2;/b\n")
    text = draft((str(tmp_path / "logs"), "csv"))
    assert "systems" not in tomllib.loads(text)
    assert "no column holds an identifier type" in text.split("# RISK LIST")[1]
    assert "client_ip  [ip]" in text


def test_a_delta_table_is_read_for_its_schema(tmp_path: Path) -> None:
    """A Delta table's columns give a `format = "delta"` system on its folder."""
    from deltalake import write_deltalake

    write_deltalake(str(tmp_path / "events"), CLICKS)
    system = tomllib.loads(draft((str(tmp_path / "events"), "delta")))["systems"][0]
    assert (system["format"], system["location"], system["where"]) == ("delta", str(tmp_path / "events"),
                                                                       {"user_id": "user_id"})


def test_an_s3_location_is_read_and_drafted_as_a_prefix(s3_client, bucket: str, s3_endpoint: str,  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An s3:// location (given without its trailing slash) is read through S3 and drafted ending in '/'."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    sink = pa.BufferOutputStream()
    pq.write_table(CLICKS, sink)
    s3_client.put_object(Bucket=bucket, Key="clicks/2026-01-01/part-0.parquet", Body=sink.getvalue().to_pybytes())
    system = tomllib.loads(draft((f"s3://{bucket}/clicks", "parquet")))["systems"][0]
    assert (system["location"], system["where"]) == (f"s3://{bucket}/clicks/", {"user_id": "user_id"})


def test_a_missing_location_fails_naming_it(tmp_path: Path) -> None:
    """A location that is not there stops discover with one line naming it."""
    with pytest.raises(ErasureError, match="snapshot location .*nowhere: not found"):
        draft((str(tmp_path / "nowhere"), "parquet"))
