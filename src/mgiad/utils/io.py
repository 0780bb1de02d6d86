"""Files that are whole or absent: writes go to a temporary file in the same folder, are synced,
then renamed over the target (a reader sees the old file or the new one, never half of one)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_json_atomic", "plain_file_mode"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plain_file_mode() -> int:
    """The mode a plain ``open`` gives a new file under the process's umask (mkstemp: 0600)."""
    return 0o666 & ~_umask()


def atomic_write(path: Path, write) -> None:
    """Write ``path`` through a temporary file and a rename (readers never see half a file),
    with the permissions a plain ``open`` would give under the process's umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, plain_file_mode())  # mkstemp makes 0600; a plain open() would not
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # a reader sees the old file or the new one, never half of one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(obj: Any, path: str | os.PathLike) -> None:
    atomic_write(Path(path), lambda fh: fh.write((json.dumps(obj, indent=1) + "\n").encode()))
