"""Atomic file writes: a write that fails never destroys the previous good file.

Every writer of fastcolor (images, model files, checkpoints, codebooks, JSON
reports, manifests) writes through ``atomic_path``: the data goes to a
temporary file in the destination's folder, which is flushed to disk and
renamed over the destination in one step (os.replace). A write that raises,
or is interrupted (KeyboardInterrupt), removes its temporary file and leaves
the destination as it was.

Temporary files are recognisable and name their writer:

    .NAME~fastcolor-HOST-PID-XXXXXXXX[SUFFIX]

(hidden, so image searches skip them). A process killed outright (SIGKILL,
power loss) cannot remove its own; the next atomic write to the same path
removes those whose writer is gone: same HOST, and no process PID alive.
Temporary files of live writers (a concurrent write to the same path) and of
other hosts (a shared file system) are left alone. ``remove_own_temp_files``
removes the ones this process still holds (the command-line handler calls it
on the way out).
"""

import glob
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "remove_own_temp_files", "remove_stale_temp_files", "temp_prefix", "write_bytes_atomic"]

_MARK = "~fastcolor-"
_NAME_KEEP = 120  # characters of the destination's name kept in the temporary name (file names <= 255 bytes)
_own = set()  # temporary files this process has created and not yet renamed or removed


def _host():
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:32] or "host"


def temp_prefix(path):
    """The name prefix shared by every temporary file for path (any writer)."""
    return f".{Path(path).name[:_NAME_KEEP]}{_MARK}"


def _pid_alive(pid):
    if pid <= 0:
        return True  # not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep
    return True


def remove_stale_temp_files(path):
    """Remove the temporary files for path left by dead writers on this host
    (see the module docstring). Returns the removed paths."""
    path = Path(path)
    prefix = temp_prefix(path)
    pattern = re.compile(re.escape(prefix) + r"(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-")
    host, removed = _host(), []
    for name in glob.glob(glob.escape(str(path.parent / prefix)) + "*"):
        m = pattern.match(os.path.basename(name))
        if m is None or m["host"] != host or _pid_alive(int(m["pid"])):
            continue
        try:
            os.remove(name)
            removed.append(Path(name))
        except OSError:
            pass
    return removed


def remove_own_temp_files():
    """Remove the temporary files this process created and has not finished
    (normally none: atomic_path removes its own; this covers an interrupt that
    arrives inside that clean-up)."""
    for name in list(_own):
        try:
            os.remove(name)
        except OSError:
            pass
        _own.discard(name)


@contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary file name in path's folder (created if needed). When
    the block succeeds the file is flushed to disk and renamed over path in
    one step; when it raises (or is interrupted), the temporary file is
    removed and path is left as it was. Stale temporary files of dead writers
    of the same path are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{temp_prefix(path)}{_host()}-{os.getpid()}-",
                               suffix=suffix)
    _own.add(tmp)
    try:
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory (a file was expected)", str(path))
        os.replace(tmp, path)
        _own.discard(tmp)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        _own.discard(tmp)
        if isinstance(exc, OSError) and exc.filename is not None and os.fspath(exc.filename) == tmp:
            exc.filename = str(path)  # name the file being written, not the temporary one
        raise


def write_bytes_atomic(path, data):
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
