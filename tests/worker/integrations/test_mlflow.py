"""Lineage from MLflow: registered model versions, their runs' logged dataset sources mapped
to snapshots, and the tags on flagged versions, against a real SQLite-backed MLflow store."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from unittest.mock import patch

import pytest
from sqlalchemy import select

from tests.helpers import (
    NO_BATCH_WAIT,
    ListDispatch,
    MakeRuntime,
    drain,
    erased,
    snapshot_system,
    stub,
    system_table,
    write_config,
    write_snapshot,
)
from worker.config import MLFLOW_HTTP_BOUNDS, load
from worker.engine import flags, intake, lineage
from worker.engine.flags import F
from worker.errors import ConfigError
from worker.integrations import mlflow_lineage
from worker.queue import dispatch, tasks
from worker.runtime import Runtime
from worker.store.models import Lineage
from worker.surfaces import views
from worker.surfaces.cli import main

mlflow = pytest.importorskip("mlflow")
from mlflow.entities import Dataset, DatasetInput  # noqa: E402

# trained before the erasure, whatever second the test reaches lineage.add in (times are kept to the second)
BEFORE_THE_ERASURE = datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture(autouse=True)
def http_bounds_unset() -> Iterator[None]:
    """Each test starts without the MLflow HTTP bounds a worker sets, and leaves none behind."""
    with patch.dict(os.environ):
        for name in MLFLOW_HTTP_BOUNDS:
            os.environ.pop(name, None)
        yield


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store migrated once per module (the migration takes seconds)."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh copy of the migrated store for this test."""
    monkeypatch.chdir(tmp_path)  # anything MLflow writes by default lands here
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def client(tracking_uri: str) -> Any:
    """An MLflow client on the test's store."""
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """The folder that holds the snapshot locations."""
    return tmp_path / "data"


@pytest.fixture
def config(tmp_path: Path, data: Path) -> Path:
    """A config with two snapshot systems, one in a folder whose name starts like the other's."""
    systems = "".join(
        system_table(name, "snapshot", location=f"{data}/{folder}/", format="parquet", where={"user_id": "user_id"})
        for name, folder in (("clickstream", "clickstream"), ("clickstream-old", "clickstream-old"))
    )
    return write_config(tmp_path, systems)


@pytest.fixture
def train(client: Any, tmp_path: Path) -> Callable[..., str]:
    """Log a run reading the given sources, started now or at `started`, and register a version of the model from it."""
    experiment = client.create_experiment("training", artifact_location=str(tmp_path / "artifacts"))

    def trained(model: str, *sources: tuple[str, dict[str, Any]], started: datetime | None = None) -> str:
        run = client.create_run(experiment, start_time=int(started.timestamp() * 1000) if started else None)
        inputs = [DatasetInput(Dataset(name=f"data{i}", digest=hashlib.sha256(text.encode()).hexdigest()[:8],
                                       source_type=kind, source=text))  # MLflow keeps one dataset per digest
                  for i, (kind, text) in enumerate((kind, json.dumps(source)) for kind, source in sources)]
        client.log_inputs(run.info.run_id, datasets=inputs)
        client.set_terminated(run.info.run_id)
        if not client.search_registered_models(f"name = '{model}'"):
            client.create_registered_model(model)
        return str(client.create_model_version(model, str(tmp_path / "model"), run_id=run.info.run_id).version)

    return trained


def local(path: Path | str) -> tuple[str, dict[str, Any]]:
    """A local file source as MLflow logs it."""
    return "local", {"uri": str(path)}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run one command in-process; returns the exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def import_json(capsys: pytest.CaptureFixture[str], config: Path, tracking_uri: str) -> dict[str, Any]:
    """Run `lineage import-mlflow --json` and return its summary."""
    code, out, err = run(capsys, "lineage", "import-mlflow", "--config", str(config),
                         "--tracking-uri", tracking_uri, "--json")
    assert code == 0, err
    return dict(json.loads(out))


def lineage_rows(config: Path) -> list[tuple[str, str, str]]:
    """Every lineage row in the store, sorted."""
    with Runtime(load(config), dispatch=ListDispatch()).transaction() as session:
        return sorted(session.execute(select(Lineage.model, Lineage.version, Lineage.snapshot)).all())  # type: ignore[arg-type]


def test_sources_under_a_location_become_snapshots(config: Path, data: Path, tracking_uri: str,
                                                   train: Callable[..., str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Each version's run sources map to SYSTEM:FOLDER, and `models --json` lists the versions."""
    train("recsys", local(data / "clickstream/2026-11-01/part-0.parquet"),
          local(f"file://{data}/clickstream/2026-11-02/"))
    train("recsys", local(data / "clickstream-old/2025-01-01"))
    summary = import_json(capsys, config, tracking_uri)
    assert lineage_rows(config) == [("recsys", "1", "clickstream:2026-11-01"),
                                    ("recsys", "1", "clickstream:2026-11-02"),
                                    ("recsys", "2", "clickstream-old:2025-01-01")]
    assert (summary["runs_seen"], summary["model_versions"], summary["lineage_rows_added"]) == (2, 2, 3)
    _, out, _ = run(capsys, "models", "--config", str(config), "--json")
    assert [(m["model"], m["version"]) for m in json.loads(out)] == [("recsys", "1"), ("recsys", "2")]


def test_importing_twice_adds_nothing(config: Path, data: Path, tracking_uri: str, train: Callable[..., str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A second import of the same runs adds no lineage row."""
    train("recsys", local(data / "clickstream/2026-11-01/"))
    import_json(capsys, config, tracking_uri)
    again = import_json(capsys, config, tracking_uri)
    assert again["lineage_rows_added"] == 0 and again["model_versions"] == 1
    assert lineage_rows(config) == [("recsys", "1", "clickstream:2026-11-01")]


def test_unmapped_sources_are_counted_and_shown(config: Path, data: Path, tracking_uri: str,
                                                train: Callable[..., str], capsys: pytest.CaptureFixture[str]) -> None:
    """Sources outside every location are counted, shown by scheme and path, and record nothing."""
    train("recsys", local(data / "clickstream/2026-11-01/"), ("s3", {"uri": "s3://other-bucket/x/2026/"}))
    train("ranker", ("http", {"url": "https://user:secret@example.com/d.csv?token=abc"}))
    summary = import_json(capsys, config, tracking_uri)
    assert summary["sources_unmapped"] == 2
    assert summary["unmapped"] == [{"scheme": "https", "path": "example.com/d.csv", "count": 1},
                                   {"scheme": "s3", "path": "other-bucket/x/2026", "count": 1}]
    assert [s["model"] for s in summary["skipped_versions"]] == ["ranker"]
    assert lineage_rows(config) == [("recsys", "1", "clickstream:2026-11-01")]


def test_summary_for_people(config: Path, data: Path, tracking_uri: str, train: Callable[..., str],
                            capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json, the first line gives the four figures and each unmapped source follows."""
    train("recsys", local(data / "clickstream/2026-11-01/"), local("/elsewhere/2026-11-01/"))
    code, out, _ = run(capsys, "lineage", "import-mlflow", "--config", str(config), "--tracking-uri", tracking_uri)
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "runs seen 1, model versions 1, lineage rows added 1, sources unmapped 1"
    assert lines[1].split() == ["unmapped", "file", "/elsewhere/2026-11-01", "(1)"]


def test_tracking_uri_comes_from_the_config(tmp_path: Path, data: Path, tracking_uri: str, train: Callable[..., str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Without --tracking-uri, the config's [mlflow] tracking_uri is read."""
    systems = system_table("clickstream", "snapshot", location=f"{data}/clickstream", where={"user_id": "user_id"})
    config = write_config(tmp_path, systems, top=f'[mlflow]\ntracking_uri = "{tracking_uri}"\n')
    train("recsys", local(data / "clickstream/2026-11-01/a.parquet"))
    code, _, err = run(capsys, "lineage", "import-mlflow", "--config", str(config))
    assert code == 0, err
    assert lineage_rows(config) == [("recsys", "1", "clickstream:2026-11-01")]


def test_no_tracking_uri_exits_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With no --tracking-uri and no [mlflow] table, the command exits 2 with one line."""
    code, _, err = run(capsys, "lineage", "import-mlflow", "--config", str(config))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--tracking-uri" in err


def test_missing_extra_exits_2_with_the_install_line(config: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Without mlflow installed, the command exits 2 with the one line that says how to install it."""
    monkeypatch.setitem(sys.modules, "mlflow", None)
    code, out, err = run(capsys, "lineage", "import-mlflow", "--config", str(config), "--tracking-uri", "sqlite://")
    assert code == 2 and out == ""
    assert err == "erasure lineage import-mlflow needs the [mlflow] extra: pip install 'erasure-worker[mlflow]'\n"


@pytest.mark.parametrize(("kind", "source", "expected"), [
    ("local", {"uri": "{data}/clickstream/2026-11-01/x/part-0.parquet"}, {"clickstream:2026-11-01"}),
    ("local", {"uri": "file://{data}/clickstream/2026-11-01"}, {"clickstream:2026-11-01"}),
    ("local", {"uri": "file://localhost{data}/clickstream/2026%2D11%2D01/"}, {"clickstream:2026-11-01"}),
    ("local", {"uri": "{data}/clickstream-old/2026-11-01/"}, {"clickstream-old:2026-11-01"}),
    ("local", {"uri": "{data}/clickstream2/2026-11-01/"}, set()),
    ("local", {"uri": "{data}/clickstream/../private/2026-11-01/"}, set()),
    ("local", {"uri": "{data}/clickstream/"}, set()),
    ("local", {"uri": "{data}/clickstream/part-0.parquet"}, set()),
    ("local", {"uri": "{data}/clickstream/*/"}, set()),
    ("local", {"uri": "clickstream/2026-11-01/"}, set()),
    ("local", {"uri": "file://otherhost{data}/clickstream/2026-11-01/"}, set()),
    ("s3", {"uri": "s3://bucket{data}/clickstream/2026-11-01/"}, set()),
    ("delta_table", {"path": "{data}/clickstream", "delta_table_version": 7}, {"clickstream:7"}),
    ("delta_table", {"path": "{data}/clickstream"}, set()),
    ("delta_table", {"path": "{data}/clickstream", "delta_table_version": True}, set()),
    ("spark", {"table_name": "db.clicks"}, set()),
])
def test_source_mapping_boundaries(config: Path, data: Path, kind: str, source: dict[str, Any],
                                   expected: set[str]) -> None:
    """A source maps only to the snapshot folder it lies in; a near name, '..', a glob, a bare location: nowhere."""
    (data / "clickstream").mkdir(parents=True)
    (data / "clickstream/part-0.parquet").write_bytes(b"PAR1")
    filled = {k: v.replace("{data}", str(data)) if isinstance(v, str) else v for k, v in source.items()}
    found, _ = mlflow_lineage.snapshots_of(load(config), kind, filled)
    assert found == expected


@pytest.mark.parametrize(("uri", "expected"), [
    ("s3://ml-data/clickstream/2026-11-01/part-0.parquet", {"clickstream:2026-11-01"}),
    ("s3a://ml-data/clickstream/2026-11-01/", {"clickstream:2026-11-01"}),
    ("s3://ml-data/clickstream-old/2026-11-01/", set()),
    ("s3://other-data/clickstream/2026-11-01/", set()),
    ("s3://ml-data/clickstream/../private/2026-11-01/", set()),
    ("/ml-data/clickstream/2026-11-01/", set()),
])
def test_object_store_source_mapping(config: Path, uri: str, expected: set[str]) -> None:
    """An s3:// source maps to a snapshot of an s3:// location only in the same bucket and under its prefix."""
    loaded = load(config)
    system = replace(loaded.system("clickstream"), location="s3://ml-data/clickstream/")  # type: ignore[call-arg]
    found, _ = mlflow_lineage.snapshots_of(replace(loaded, systems=(system,)), "s3", {"uri": uri})
    assert found == expected


def test_a_version_without_a_run_is_skipped_and_listed(config: Path, client: Any, tracking_uri: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A model version registered without a run gets no lineage and is listed with the reason."""
    client.create_registered_model("bare")
    client.create_model_version("bare", "/models/bare")
    summary = import_json(capsys, config, tracking_uri)
    assert summary["skipped_versions"] == [{"model": "bare", "version": "1", "reason": "no run"}]
    assert (summary["model_versions"], summary["runs_seen"], summary["lineage_rows_added"]) == (1, 0, 0)


def test_a_missing_sqlite_store_exits_2(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A SQLite tracking URI naming no file exits 2 and leaves no empty MLflow store behind."""
    code, _, err = run(capsys, "lineage", "import-mlflow", "--config", str(config),
                       "--tracking-uri", f"sqlite:///{tmp_path}/typo/mlflow.db")
    assert code == 2 and "no MLflow store" in err
    assert not (tmp_path / "typo").exists()


@pytest.fixture
def clicks(tmp_path: Path) -> Path:
    """The clickstream snapshots: user 2 is in 2026-10-01, not in 2026-11-01."""
    write_snapshot(tmp_path / "clicks/2026-10-01/part-0.parquet", [1, 2, 3])
    write_snapshot(tmp_path / "clicks/2026-11-01/part-0.parquet", [1, 3])
    return tmp_path / "clicks"


@pytest.fixture
def tagging(make_runtime: MakeRuntime, clicks: Path) -> Callable[..., Runtime]:
    """A runtime over the clickstream system that tags flagged versions in MLflow at the given URI."""
    def made(uri: str, store_url: str | None = None) -> Runtime:
        return make_runtime(snapshot_system(clicks), store_url, top=f'[mlflow]\ntracking_uri = "{uri}"\n',
                            worker=NO_BATCH_WAIT)

    return made


def tags_of(client: Any, model: str = "recsys", version: str = "1") -> dict[str, str]:
    """The erasure tags of one model version."""
    return {k: v for k, v in client.get_model_version(model, version).tags.items() if k.startswith("erasure.")}


def test_a_settled_request_tags_the_versions_it_flagged(tagging: Callable[..., Runtime], tracking_uri: str,
                                                        client: Any, train: Callable[..., str], clicks: Path,
                                                        store_url: str) -> None:
    """A version imported from MLflow and flagged when a request settles is tagged flagged, open, with the request."""
    rt = tagging(tracking_uri, store_url)
    train("recsys", local(clicks / "2026-10-01/part-0.parquet"))
    train("recsys", local(clicks / "2026-11-01/"))
    mlflow_lineage.import_runs(rt, tracking_uri)
    request_id = erased(rt, "2")
    assert views.status(rt, request_id)["status"] == "completed"
    assert tags_of(client) == {"erasure.flagged": "true", "erasure.flag_state": "open", "erasure.requests": request_id}
    assert tags_of(client, version="2") == {}


def test_tags_follow_the_flag_state(tagging: Callable[..., Runtime], tracking_uri: str, client: Any,
                                    train: Callable[..., str], clicks: Path) -> None:
    """`models ack` then `retrained` sets erasure.flag_state on the version; it stays flagged."""
    rt = tagging(tracking_uri)
    train("recsys", local(clicks / "2026-10-01/"))
    mlflow_lineage.import_runs(rt, tracking_uri)
    erased(rt, "2")
    flags.change(rt, "recsys", "1", F.ACKNOWLEDGED, "ticket ML-12")
    drain(rt)
    assert tags_of(client)["erasure.flag_state"] == "acknowledged"
    flags.change(rt, "recsys", "1", F.RETRAINED, "recsys 2")
    drain(rt)
    assert (tags_of(client)["erasure.flag_state"], tags_of(client)["erasure.flagged"]) == ("retrained", "true")


def test_lineage_added_after_the_request_tags_the_version(tagging: Callable[..., Runtime], tracking_uri: str,
                                                          client: Any, train: Callable[..., str],
                                                          clicks: Path) -> None:
    """A version imported after a request settled is flagged by the import and tagged; earlier ids are kept."""
    rt = tagging(tracking_uri)
    version = train("recsys", local(clicks / "2026-10-01/"))
    client.set_model_version_tag("recsys", version, "erasure.requests", "from-another-store")
    request_id = erased(rt, "2")
    mlflow_lineage.import_runs(rt, tracking_uri)
    drain(rt)
    assert tags_of(client)["erasure.requests"] == f"{request_id},from-another-store"


def test_trained_at_is_the_runs_start(tagging: Callable[..., Runtime], tracking_uri: str,
                                      train: Callable[..., str], clicks: Path) -> None:
    """A version whose run started after the snapshot was rewritten without the subject is not flagged;
    one whose run started before is, and each lineage row keeps its run's start."""
    rt = tagging(tracking_uri)
    request_id = erased(rt, "2")
    rewritten = next(s["finished_at"] for s in views.status(rt, request_id)["systems"] if s["system"] == "clickstream")
    after = datetime.fromisoformat(rewritten) + timedelta(seconds=5)
    before = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    train("recsys", local(clicks / "2026-10-01/"), started=after)
    train("recsys", local(clicks / "2026-10-01/"), started=before)
    mlflow_lineage.import_runs(rt, tracking_uri)
    with rt.transaction() as session:
        trained = sorted(session.execute(select(Lineage.version, Lineage.trained_at)).all())
    assert [(v, at.replace(tzinfo=UTC)) for v, at in trained] == [("1", after), ("2", before)]
    assert [(m["version"], [f["request_id"] for f in m["flags"]]) for m in views.models(rt, flagged_only=True)] == [
        ("2", [request_id])]


def test_an_unreachable_mlflow_neither_holds_nor_fails_the_request(
    tagging: Callable[..., Runtime], json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """With MLflow down, the request completes before tagging is even enqueued; tagging is tried
    max_attempts times, then given up with one mlflow.tag_failed that names no request or subject."""
    rt = tagging("http://127.0.0.1:1")
    lineage.add(rt, "recsys", "1", ["clickstream:2026-10-01"], trained_at=BEFORE_THE_ERASURE)
    seen_at_enqueue = []
    dispatch = cast(ListDispatch, rt.dispatch)
    enqueue = dispatch.tag

    def tag(model: str, version: str) -> None:
        seen_at_enqueue.append(views.status(rt, request_id)["status"])
        enqueue(model, version)

    dispatch.tag = tag  # type: ignore[method-assign]
    request_id = intake.submit(rt, {"user_id": "2"}).request_id
    drain(rt)
    assert seen_at_enqueue == ["completed"]
    assert views.status(rt, request_id)["status"] == "completed"
    events = json_logs()
    failed = [e for e in events if e["event"] == "mlflow.tag_failed"]
    assert [(e["model"], e["version"], e["attempts"]) for e in failed] == [("recsys", "1", 3)]
    assert [e["attempt"] for e in events if e["event"] == "mlflow.tag_retry"] == [1, 2]
    assert set(failed[0]) == {"event", "model", "version", "attempts", "error", "level", "logger", "timestamp"}


def test_the_celery_task_retries_then_gives_up(tagging: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch,
                                               json_logs: Callable[[], list[dict[str, Any]]]) -> None:
    """erasure.tag_mlflow, run as a worker would (eagerly here), retries and ends in one mlflow.tag_failed."""
    rt = tagging("http://127.0.0.1:1")
    erased(rt, "2")
    # flags the settled request, enqueues tagging
    lineage.add(rt, "recsys", "1", ["clickstream:2026-10-01"], trained_at=BEFORE_THE_ERASURE)
    monkeypatch.setattr(dispatch, "_current", rt)
    tasks.tag_mlflow.apply(args=["recsys", "1"])
    failed = [e for e in json_logs() if e["event"] == "mlflow.tag_failed"]
    assert [(e["model"], e["attempts"]) for e in failed] == [("recsys", 3)]


def test_a_silent_mlflow_is_given_up_on_after_bounded_calls(
    tagging: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch,
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """A tracking server that takes the connection and never answers costs one timeout per try: MLflow's
    seven retries are bounded to one unless the environment says otherwise (here the timeout)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    with socket.create_server(("127.0.0.1", 0)) as silent:
        rt = tagging(f"http://127.0.0.1:{silent.getsockname()[1]}")
        erased(rt, "2")
        lineage.add(rt, "recsys", "1", ["clickstream:2026-10-01"], trained_at=BEFORE_THE_ERASURE)
        assert mlflow_lineage.tag(rt, "recsys", "1", attempt=3) is None
        silent.settimeout(0)
        accepted = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                silent.accept()[0].close()
                accepted += 1
    assert accepted == 2
    assert [e["event"] for e in json_logs() if e["event"].startswith("mlflow.")] == ["mlflow.tag_failed"]


def test_an_unknown_version_is_given_up_at_once(tagging: Callable[..., Runtime], tracking_uri: str,
                                                json_logs: Callable[[], list[dict[str, Any]]]) -> None:
    """A flagged version MLflow does not know is not tried again: one mlflow.tag_failed, no retry."""
    rt = tagging(tracking_uri)
    lineage.add(rt, "recsys", "1", ["clickstream:2026-10-01"], trained_at=BEFORE_THE_ERASURE)
    erased(rt, "2")
    failed = [e for e in json_logs() if e["event"].startswith("mlflow.tag")]
    assert [(e["event"], e["attempts"], e["error"]) for e in failed] == [
        ("mlflow.tag_failed", 1, "RESOURCE_DOES_NOT_EXIST")]


def test_the_requests_tag_keeps_the_newest_ids_that_fit(tagging: Callable[..., Runtime], tracking_uri: str,
                                                        client: Any, train: Callable[..., str], clicks: Path) -> None:
    """Over MLflow's limit, the tag keeps the newest ids that fit, then `+N more` counting the rest."""
    rt = tagging(tracking_uri)
    version = train("recsys", local(clicks / "2026-10-01/"))
    earlier = [str(uuid.UUID(int=i)) for i in range(204)]  # 134 shown in 4966 characters, 70 left out
    client.set_model_version_tag("recsys", version, "erasure.requests", ",".join([*earlier[:134], "+70 more"]))
    mlflow_lineage.import_runs(rt, tracking_uri)
    request_id = erased(rt, "2")
    value = tags_of(client)["erasure.requests"]
    kept = value.split(",")
    assert len(value) <= mlflow_lineage.TAG_VALUE_LIMIT < len(value) + 37
    assert kept[:3] == [request_id, *earlier[:2]]
    assert kept[-1] == f"+{204 - (len(kept) - 1)} more"  # at least: one of the 70 left out may be this request


@pytest.mark.parametrize(("newest", "earlier", "limit", "expected"), [
    (["c"], "a,b", 100, "c,a,b"),
    (["a"], "a,b", 100, "a,b"),
    (["c", "a"], "", 100, "c,a"),
    (["dd", "cc"], "bb,aa", 11, "dd,cc,bb,aa"),
    (["dd", "cc"], "bb,aa", 10, "dd,+3 more"),
    (["dd"], "cc,+4 more", 100, "dd,cc,+3 more"),  # dd may be one of the 4 left out: at least 3 more
    (["dd"], "dd,+4 more", 100, "dd,+4 more"),
    (["eeeeeeeeee"], "", 5, "+1 more"),
    ([], " a ,, b ", 100, "a,b"),
])
def test_requests_tag_value(newest: list[str], earlier: str, limit: int, expected: str) -> None:
    """Newest first, earlier ids kept after, duplicates once, and `+N more` never undercounting what was left out."""
    assert mlflow_lineage.requests_tag(newest, earlier, limit) == expected


def test_config_reads_the_mlflow_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[mlflow] tracking_uri is read, a relative SQLite path is taken beside the config, and the env wins."""
    config = write_config(tmp_path, stub("s"), top='[mlflow]\ntracking_uri = "sqlite:///mlflow.db"\n')
    assert load(config).mlflow_tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("ERASURE_MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert load(config).mlflow_tracking_uri == "http://mlflow.internal:5000"


def test_config_refuses_an_unknown_mlflow_key(tmp_path: Path) -> None:
    """A typo in the [mlflow] table stops start-up naming the table and the key."""
    config = write_config(tmp_path, stub("s"), top='[mlflow]\ntracking_url = "sqlite:///mlflow.db"\n')
    with pytest.raises(ConfigError, match=r"mlflow: tracking_url: unknown key"):
        load(config)
