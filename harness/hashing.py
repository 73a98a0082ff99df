"""Content hashes of JSON-able data: cache keys, cell ids, suite hashes. Standard library only,
so planning a suite (cells, their ids) imports no torch."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
