"""The keys that keep identifiers secret, and where they come from.

Three keys, each with one use, so that one leaking does not open the others' data:

- the identifiers key seals the identifiers a request holds while it is being erased;
- the suppression key seals the suppression list, the one thing kept after completion, that
  `erasure replay` reads after a backup restore;
- the subject key makes `subject_ref`, a keyed hash (HMAC-SHA256) that stands for the subject
  in statuses, logs, audit events and reports.

(Three more are derived: the DPO status page's session cookies' (`KeyRing.session_key`), the
guard list's (`KeyRing.guard_key`, from the subject key: the keyed hashes of erased subjects' values
that a training job, given the subject key, checks its data against; worker/guard.py derives it
the same way without this module), and the pseudonyms' (`KeyRing.pseudonym_key`, from the subject
key: what a sql `set` of `{ hash = true }` writes in place of a value, the same in every process).

The first two are derived (HKDF-SHA256, one label each) from a list of secrets, newest first:
the newest seals, every one opens what it sealed, so a key is rotated by putting a new secret
first, running `erasure keys rotate`, then dropping the old one. Each sealed value names the key
that sealed it (a short id) and is bound (AES-GCM associated data) to the row it belongs to, so a
value copied onto another request does not open.

Where the keys come from, first found wins:
1. $ERASURE_SECRET_KEY (secrets, comma-separated, newest first) and $ERASURE_SUBJECT_KEY;
2. $ERASURE_KEY_FILE, a key file;
3. for a SQLite store, the key file beside it (`<store>.key`), made on first use, mode 0600;
   a store on a server refuses to start: its key belongs in the deployment's secrets.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import make_url

from worker.errors import ConfigError, ErasureError

log = structlog.get_logger("erasure.keys")
MIN_SECRET_LENGTH = 32
IDENTIFIERS, SUPPRESSION = "identifiers", "suppression"
SESSION = "dpo-session"  # the status page's session cookies: a label no sealed value uses
GUARD = "guard"  # the guard list's digests, derived from the subject key (worker/guard.py derives it alike)
PSEUDONYM = "pseudonym"  # the pseudonyms connectors write in place of values, derived from the subject key
VERSION = "v1"
HOW_TO = "make one with `erasure keys new` and set ERASURE_SECRET_KEY, or point ERASURE_KEY_FILE at a key file"


class SealError(ErasureError):
    """A sealed value that no key at hand opens: a wrong key, a dropped key or a tampered value."""


def new_secret() -> str:
    """A fresh random secret, 256 bits as hex."""
    return secrets.token_hex(32)


@functools.lru_cache(maxsize=64)
def _derive(secret: str, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=f"erasure-worker/{label}".encode()).derive(secret.encode())


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


@dataclass(frozen=True)
class KeyRing:
    """The keys of one process; made by `load` (or directly, in tests)."""

    secrets: tuple[str, ...]  # newest first
    subject_secret: str
    source: str = "given"

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ConfigError(f"no secret key: {HOW_TO}")
        for secret in (*self.secrets, self.subject_secret):
            if len(secret) < MIN_SECRET_LENGTH:
                raise ConfigError(f"{self.source}: a secret key is shorter than {MIN_SECRET_LENGTH} characters; "
                                  f"{HOW_TO}")

    def _keys(self, purpose: str) -> list[tuple[str, bytes]]:
        keys = [_derive(secret, purpose) for secret in self.secrets]
        return [(_key_id(key), key) for key in keys]

    def seal(self, purpose: str, bound_to: str, data: Mapping[str, Sequence[str]]) -> str:
        """The identifiers, encrypted under the newest key of `purpose`, bound to one row."""
        key_id, key = self._keys(purpose)[0]
        nonce = os.urandom(12)
        plain = json.dumps({k: list(v) for k, v in data.items()}, separators=(",", ":")).encode()
        sealed = AESGCM(key).encrypt(nonce, plain, f"{purpose}:{bound_to}".encode())
        return f"{VERSION}.{key_id}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, purpose: str, bound_to: str, token: str) -> dict[str, list[str]]:
        """The identifiers a `seal` made; SealError, naming no value, if no key opens them."""
        try:
            version, key_id, body = token.split(".")
            raw = base64.urlsafe_b64decode(body)
        except (ValueError, AttributeError):
            raise SealError(f"sealed {purpose} of {bound_to}: not a sealed value") from None
        if version != VERSION:
            raise SealError(f"sealed {purpose} of {bound_to}: unknown format {version!r}")
        for known_id, key in self._keys(purpose):
            if known_id == key_id:
                try:
                    plain = AESGCM(key).decrypt(raw[:12], raw[12:], f"{purpose}:{bound_to}".encode())
                except InvalidTag:
                    raise SealError(f"sealed {purpose} of {bound_to}: does not open with key {key_id} "
                                    "(tampered, or sealed for another row)") from None
                return dict(json.loads(plain))
        given = ", ".join(k for k, _ in self._keys(purpose))
        raise SealError(f"sealed {purpose} of {bound_to}: key {key_id} is not among the keys given ({given}); "
                        "was it dropped before `erasure keys rotate` ran?")

    def session_key(self) -> bytes:
        """The newest secret's key for the status page's session MACs: a label of its own, so it
        opens nothing sealed; a rotation changes it (and ends every session)."""
        return _derive(self.secrets[0], SESSION)

    def guard_key(self) -> bytes:
        """The guard list's HMAC key, derived from the subject key: it outlives a rotation of the
        secrets, and a training job holding the subject key derives the same one."""
        return _derive(self.subject_secret, GUARD)

    def pseudonym_key(self) -> bytes:
        """The key of the pseudonyms a connector writes in place of a stored value (sql's `{ hash = true }`),
        derived from the subject key: a value gets the same pseudonym in every process and after a
        rotation of the secrets, so joins on it keep working."""
        return _derive(self.subject_secret, PSEUDONYM)

    @property
    def guard_key_id(self) -> str:
        """The short id of the guard key, written in an exported guard list to tell a wrong key."""
        return _key_id(self.guard_key())

    def needs_rotation(self, token: str, purpose: str) -> bool:
        """Whether a sealed value was sealed under a key other than the newest."""
        return token.split(".")[1:2] != [self._keys(purpose)[0][0]]

    def subject_ref(self, identifiers: Mapping[str, Sequence[str]]) -> str:
        """A short keyed hash of the identifiers: stable for one subject, useless to reverse."""
        canonical = json.dumps({k: sorted(v) for k, v in sorted(identifiers.items())}, separators=(",", ":"))
        key = hashlib.sha256(self.subject_secret.encode()).digest()
        return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()[:20]


def load(store_url: str) -> KeyRing:
    """The keys from the environment, a key file, or the key file beside a SQLite store."""
    env = os.environ.get("ERASURE_SECRET_KEY", "").strip()
    if env:
        given = tuple(s.strip() for s in env.split(",") if s.strip())
        # with no subject key of its own, the oldest secret makes it: rotation keeps refs stable
        subject = os.environ.get("ERASURE_SUBJECT_KEY", "").strip() or _derive(given[-1], "subject").hex()
        return KeyRing(given, subject, source="ERASURE_SECRET_KEY")
    named = os.environ.get("ERASURE_KEY_FILE", "").strip()
    if named:
        return read_key_file(Path(named))
    beside = _beside_sqlite_store(store_url)
    if beside is None:
        shown = make_url(store_url).render_as_string(hide_password=True)
        raise ConfigError(f"store {shown} needs a secret key to seal identifiers: {HOW_TO}")
    if not beside.exists():
        _make_key_file(beside)
    return read_key_file(beside)


def _beside_sqlite_store(store_url: str) -> Path | None:
    url = make_url(store_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return Path("erasure.key").resolve()
    return Path(database + ".key").resolve()


def read_key_file(path: Path) -> KeyRing:
    """A key file: `secrets = ["newest", ...]` and `subject = "..."` (TOML)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such key file; {HOW_TO}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the key file: {exc}") from None
    given, subject = raw.get("secrets"), raw.get("subject")
    if not (isinstance(given, list) and given and all(isinstance(s, str) for s in given)) \
            or not isinstance(subject, str):
        raise ConfigError(f'{path}: a key file holds secrets = ["...", ...] (newest first) and subject = "..."')
    if path.stat().st_mode & 0o077:
        log.warning("keys.file_readable_by_others", path=str(path), hint=f"chmod 600 {path}")
    return KeyRing(tuple(given), subject, source=str(path))


def key_file_text(given: Sequence[str], subject: str) -> str:
    """The text of a key file."""
    listed = ", ".join(json.dumps(s) for s in given)
    return ("# erasure-worker keys: keep secret, back up apart from the store.\n"
            "# secrets: newest first; keep an old one until `erasure keys rotate` has run.\n"
            f"secrets = [{listed}]\nsubject = {json.dumps(subject)}\n")


def _make_key_file(path: Path) -> None:
    """Write the key file whole beside, then link it into place: a process racing this one
    either finds no file or a complete one, and only one of the two files wins."""
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(key_file_text([new_secret()], new_secret()))
        os.link(draft, path)
    except FileExistsError:
        return  # another process made it first
    except OSError as exc:
        raise ConfigError(f"{path}: cannot make the key file: {exc.strerror}") from None
    finally:
        draft.unlink(missing_ok=True)
    log.warning("keys.created", path=str(path),
                hint="back this file up apart from the store: without it no identifier can be read")
