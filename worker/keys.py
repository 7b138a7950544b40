"""The key behind subject references: from $ERASURE_SECRET_KEY, else a key file of
0600 mode beside the config file, made on first use."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from worker import config as settings

log = structlog.get_logger("erasure.keys")
KEY_FILE = "erasure.key"


def subject_key(config_path: Path) -> bytes:
    """The HMAC key for subject references."""
    text = settings.secret_key_text()
    if text:
        return hashlib.sha256(text.encode()).digest()
    path = config_path.parent / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    log.warning("keys.created", path=str(path), hint="keep this file; set ERASURE_SECRET_KEY in production")
    return bytes.fromhex(path.read_text().strip())


def subject_ref(key: bytes, identifiers: Mapping[str, Sequence[str]]) -> str:
    """A short keyed hash of the identifiers: stable for one subject, useless to reverse."""
    canonical = json.dumps({k: sorted(v) for k, v in sorted(identifiers.items())}, separators=(",", ":"))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()[:20]
