"""Atomic writes and sha256 digests: one implementation for every stage."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def atomic_write(path: Path, write: Callable[[Path], None], *, private: bool = False) -> Path:
    """Make ``path`` with ``write(tmp)`` on a temporary name in its folder, then a rename.

    Nothing that looks finished is left if ``write`` fails (the temporary file is removed).
    ``private``: the file is readable by its owner only (0600; the cleaned data).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if private:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file and a rename."""
    if isinstance(data, str):
        return atomic_write(path, lambda tmp: tmp.write_text(data, encoding="utf-8"))
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def sha256_bytes(data: bytes) -> str:
    """The sha256 of some bytes (hex)."""
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    """The sha256 of a text (UTF-8, hex)."""
    return sha256_bytes(text.encode("utf-8"))


def key_of(obj: Any) -> str:
    """A stable sha256 of a JSON-able object (a cache key)."""
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str))


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes (hex), read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()
