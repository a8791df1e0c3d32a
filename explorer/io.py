"""Atomic file writes: readers see the old file or the complete new one, never half of one.

Every writer of the Python API (``Trace.to_csv`` / ``to_parquet``, ``viz.to_html``, a sweep's
``cache_dir``, a saved model) writes through here and so creates missing parent folders, a
convenience in a notebook.  The command line is stricter: it checks its output paths first and
never creates a missing parent (``explorer.cli.common``).
"""
from __future__ import annotations

import os
import shutil
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
    target); then every temporary file is renamed into place.  Should anything fail or be
    interrupted before the last rename, the targets already replaced get their old content back
    (kept meanwhile as a hard link, or a copy where links are not possible) and targets that did
    not exist are removed, so a pair (a trace and its sidecar) never mixes old and new.  A target
    that is a folder is refused before anything is written.  Missing parent folders are created
    (see the module docstring).  Files get the usual permissions
    (0666 less the umask), not mkstemp's 0600.
    """
    targets = [Path(path) for path, _ in writers]
    for path in targets:
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder; write to a file path instead.")
    temps: list[tuple[Path, Path]] = []
    replaced: list[tuple[Path, Path | None]] = []       # (target, its old content kept aside, or None)
    mode = 0o666 & ~_umask()
    try:
        for path, (_, write) in zip(targets, writers):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            temps.append((Path(tmp), path))
            write(tmp)
            os.chmod(tmp, mode)
        for tmp, path in temps:
            replaced.append((path, _keep_aside(path)))
            os.replace(tmp, path)
    except BaseException:
        for path, old in reversed(replaced):
            if old is not None and path.exists() and os.path.samefile(old, path):
                old.unlink()                # never replaced: the kept link is the file itself
            elif old is not None:
                os.replace(old, path)
            elif path.exists():
                path.unlink()
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()
        raise
    for _, old in replaced:
        if old is not None:
            old.unlink()
    return [p for _, p in temps]


def _keep_aside(path: Path) -> Path | None:
    """A second name for ``path``'s current content (None if it does not exist), to restore it."""
    if not path.exists():
        return None
    fd, old = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)
    os.close(fd)
    os.unlink(old)
    try:
        os.link(path, old)
    except OSError:             # a file system without hard links
        shutil.copy2(path, old)
    return Path(old)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Write one file atomically with ``write(tmp_path)``, creating missing parent folders; returns the final path."""
    return atomic_write_many([(path, write)])[0]


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically, creating missing parent folders."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
