"""Atomic file writes: a write that fails never destroys the previous good file."""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "write_bytes_atomic"]


@contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary file name in path's folder (created if needed). When
    the block succeeds the file is flushed to disk and renamed over path in
    one step; when it raises, the temporary file is removed and path is left
    as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise


def write_bytes_atomic(path, data):
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
