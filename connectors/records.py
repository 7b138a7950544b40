"""How a stored value is written in a subject's export (`Connector.export`): as JSON, losing nothing a
person could read. Times and dates as ISO 8601, decimals and UUIDs as their text, bytes as
`{"base64": "..."}`, nested lists and mappings value by value."""

from __future__ import annotations

import base64
import math
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any


def jsonable(value: Any) -> Any:
    """The value as JSON can hold it (a float that JSON cannot, NaN or infinite, as its text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def record(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A row as a JSON object, field by field."""
    return {str(name): jsonable(value) for name, value in fields.items()}
