"""`erasure demo` as a new user runs it, in a real process: it exits 0 and shows each request
completed across every kind (a signed HTTP service, LanceDB embeddings, a paper archive worked by
hand), the objection keeping the account while its clicks are gone and a model is flagged for it,
and the guard catching the re-exported snapshot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_demo_shows_erasures_an_objection_and_a_catch(tmp_path: Path) -> None:
    """Exit 0; the objection's systems skipped but clickstream; user 4's row kept, 0 clicks left; ranker 1
    flagged for the objection; 3 rows caught in the re-export, users 1 and 5 left."""
    done = subprocess.run([sys.executable, "-m", "worker", "demo"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert out.count("  completed\n") == 4
    assert "scope     training: an objection to training use" in out
    assert "app-db              sql       skipped  0         -" in out
    assert "newsletter          http      erased  1         3" in out  # Bob's 3 records, by a signed DELETE
    assert "unsigned calls refused 0" in out and "subscribers left ['user1@example.com', 'user4@example.com']" in out
    assert out.count("support-embeddings  vector    erased") == 3  # Bob, user 3 and the objection
    assert out.count("paper-archive      erased by hand (demo clerk)") == 2
    assert "paper-archive      looked for by hand, not found (demo clerk)" in out
    assert "the objection (user 4): account kept in app-db (1 row), clicks left in clickstream: 0" in out
    flagged = {tuple(line.split()[:2]) for line in out.split("flagged models:")[1].splitlines()[2:] if line.strip()}
    assert {("ranker", "1"), ("recsys", "7"), ("support-bot", "2")} <= flagged
    assert "guard caught 3 row(s) of guarded subjects in clickstream:2026-12-01 and erased them; " \
           "users left there: 1, 5" in out
