"""The snapshot probe's reads of an s3:// location (probe.py): no more of an object than the probe needs,
by ranged GETs, into a scratch file deleted afterwards: a Parquet object's footer (its schema, never a
row) or a JSON lines or CSV object's first HEAD_BYTES. Mostly one GET per object."""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from connectors.aws import error_code

HEAD_BYTES = 1 << 20  # what is fetched of a JSON lines or CSV object
TAIL_BYTES = 1 << 16  # what is fetched of a Parquet object's end: its footer, mostly


@contextmanager
def ranged(location: Any, rel: str, fmt: str) -> Iterator[tuple[str, bool]]:
    """An S3 location's (an S3Folder) object: its footer (Parquet: enough for its schema) or its first
    HEAD_BYTES, in a scratch file, and whether that is all of it; one ranged GET mostly (a second for a
    Parquet footer longer than TAIL_BYTES)."""
    key = location.prefix + rel
    with location._boundary(f"reading {rel}"), tempfile.TemporaryDirectory(prefix="erasure-check-") as folder:
        scratch = Path(folder) / Path(rel).name
        if fmt == "parquet":
            data, size = _get(location.client, location.bucket, key, f"bytes=-{TAIL_BYTES}")
            length = struct.unpack("<I", data[-8:-4])[0] if len(data) >= 12 else 0
            if length + 8 > len(data) and len(data) < size:
                data, _ = _get(location.client, location.bucket, key, f"bytes=-{length + 8}")
            scratch.write_bytes(b"PAR1" + data[-(length + 8):] if length else data)  # the footer: no row
            yield str(scratch), True
            return
        data, size = _get(location.client, location.bucket, key, f"bytes=0-{HEAD_BYTES - 1}")
        scratch.write_bytes(data)
        yield str(scratch), len(data) >= size


def _get(client: Any, bucket: str, key: str, wanted: str) -> tuple[bytes, int]:
    """The bytes of a ranged GET and the object's whole size; an empty object has no range: (b"", 0)."""
    try:
        got = client.get_object(Bucket=bucket, Key=key, Range=wanted)
    except ClientError as exc:
        if error_code(exc) == "InvalidRange":
            return b"", 0
        raise
    data = bytes(got["Body"].read())
    total = str(got.get("ContentRange") or "").rpartition("/")[2]
    return data, int(total) if total.isdigit() else len(data)
