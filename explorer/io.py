"""Atomic file writes: readers see the old file or the complete new one, never half of one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_many(writers: list[tuple[str | os.PathLike, Callable[[str], None]]]) -> list[Path]:
    """Write several files so that either all appear complete or none is changed.

    Each ``write(tmp)`` writes its content to the temporary path ``tmp`` (same folder as the
    target); then every temporary file is renamed into place.  Files get the usual permissions
    (0666 less the umask), not mkstemp's 0600.
    """
    temps: list[tuple[Path, Path]] = []
    mode = 0o666 & ~_umask()
    try:
        for path, write in writers:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            temps.append((Path(tmp), path))
            write(tmp)
            os.chmod(tmp, mode)
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()
        raise
    return [p for _, p in temps]


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Write one file atomically with ``write(tmp_path)``; returns the final path."""
    return atomic_write_many([(path, write)])[0]


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
