"""Files in the data dir are the owner's alone: directories 0700, files 0600.

It holds signing keys, codec keys, the derived-password secret, the grant
store and the audit log: nothing another local user should read. ``mkdir`` and
``open`` modes are only ever narrowed by the umask, so creating with these
modes is enough whatever the umask is.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` and any missing parent created owner-only (``Path.mkdir(parents=True)`` would not)."""
    missing: list[Path] = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass  # another process made it first
    return missing[0] if missing else path


def private_file(path: Path) -> Path:
    """Create ``path`` owner-only if it is not there yet (SQLite's -wal and -shm files take its mode)."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    return path


def lock_file(directory: Path) -> int:
    """A descriptor on ``directory/.lock`` (made owner-only, as the directory), for ``flock``."""
    private_dir(directory)
    return os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, FILE_MODE)
