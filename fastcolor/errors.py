"""The one top-level error handler of every fastcolor command.

    sys.exit(run(main, argv, "fastcolor train"))

``run`` calls ``main(argv)`` and turns whatever ends it into an exit code and
at most one line on stderr:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success
1     some inputs failed (each named on its own line by the command), the rest done
2     the command refused or failed: a usage error (argparse), a bad option, an
      output plan that would overwrite an input, a missing or invalid file,
      a full disk, a permission denied, a non-finite value, out of memory:
      ``PROG: error: MESSAGE``
3     a bug: an exception fastcolor does not expect. One line names its type and
      message and where the traceback went (a file in the temp folder; or on
      stderr with ``fastcolor --debug`` / FASTCOLOR_DEBUG=1)
130   interrupted (Ctrl-C, SIGINT): ``fastcolor: interrupted``; nothing is left
      half-written (atomic writes) and no temporary file stays behind
====  ==========================================================================

argparse errors of every parser that runs inside ``run`` (fastcolor's own and
those of the pass-through commands) become the same single line, without the
usage block; ``--help`` and ``--version`` exit 0 as usual.
"""

import argparse
import errno
import os
import re
import sys
import tempfile
import traceback
from contextlib import contextmanager

__all__ = ["EXIT_BUG", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SOME_FAILED", "UsageError",
           "describe", "run"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_FAILED, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

_OS_HINTS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a folder (a file was expected)",
    errno.ENOTDIR: "not a folder",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "file name too long",
}


class UsageError(ValueError):
    """A refused command line or output plan: exit code 2, the message as it is.
    prog, when given, replaces the command's name in the line (argparse's
    sub-parser name)."""

    def __init__(self, message, prog=None):
        super().__init__(message)
        self.prog = prog


def _one_line(text):
    return re.sub(r"\s*\n\s*", " ", str(text).strip())


def describe(exc):
    """A one-line message for a known exception: OSErrors as 'PATH: reason'
    (the destination of a failed rename, not the temporary file)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = _OS_HINTS.get(exc.errno) or exc.strerror or os.strerror(exc.errno)
        if exc.strerror and exc.strerror != os.strerror(exc.errno):
            reason = exc.strerror  # a message written for this failure says more than the errno
        path = exc.filename2 if exc.filename2 is not None else exc.filename
        return _one_line(f"{os.fsdecode(path)}: {reason}" if path is not None else reason)
    if isinstance(exc, KeyError):  # str() of a KeyError is the repr of its key
        return _one_line(f"missing key {exc.args[0]!r}" if exc.args else "KeyError")
    return _one_line(str(exc) or type(exc).__name__)


def _is_out_of_memory(exc):
    return isinstance(exc, MemoryError) or any(c.__name__ == "OutOfMemoryError" for c in type(exc).__mro__)


KNOWN = (ValueError, OSError, FloatingPointError)  # ImageReadError, FileNotFoundError, UsageError included


@contextmanager
def _argparse_raises():
    """Every argparse parser raises UsageError (one line) instead of printing
    its usage block and exiting."""
    original = argparse.ArgumentParser.error

    def error(parser, message):
        raise UsageError(f"{message} (see '{parser.prog} --help')", prog=parser.prog)

    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


def _debug_enabled(debug):
    if debug is not None:
        return bool(debug)
    return os.environ.get("FASTCOLOR_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _save_traceback(exc, prog):
    """Write the traceback to a file in the temp folder; its path, or None."""
    try:
        fd, path = tempfile.mkstemp(prefix="fastcolor-traceback-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(f"{prog} {' '.join(sys.argv[1:])}\n\n")
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=f)
        return path
    except OSError:
        return None


def run(main, argv=None, prog="fastcolor", debug=None, stderr=None):
    """Run main(argv) and return its exit code (see the module docstring).
    main returns an int (or None for 0). debug: print tracebacks on stderr
    (default: FASTCOLOR_DEBUG)."""
    from .atomic import remove_own_temp_files

    stderr = sys.stderr if stderr is None else stderr
    debug = _debug_enabled(debug)

    def say(line):
        try:
            stderr.write(line + "\n")
            stderr.flush()
        except (OSError, ValueError):
            pass

    def trace(exc):
        if debug:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=stderr)

    try:
        with _argparse_raises():
            code = main(argv)
        return EXIT_OK if code is None else int(code)
    except SystemExit as exc:  # --help, --version, or a command that exits itself
        if exc.code is None:
            return EXIT_OK
        if isinstance(exc.code, int):
            return exc.code
        say(_one_line(exc.code))
        return EXIT_FAILED
    except KeyboardInterrupt:
        say("fastcolor: interrupted")
        return EXIT_INTERRUPTED
    except UsageError as exc:
        trace(exc)
        say(f"{exc.prog or prog}: error: {describe(exc)}")
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the one place that ends every command
        trace(exc)
        if _is_out_of_memory(exc):
            first = _one_line(str(exc).split("\n")[0])[:200]
            say(f"{prog}: error: out of memory ({first}); try a smaller --batch-size or another --device")
            return EXIT_FAILED
        if isinstance(exc, KNOWN):
            say(f"{prog}: error: {describe(exc)}")
            return EXIT_FAILED
        where = "the traceback is above" if debug else None
        if where is None:
            log = _save_traceback(exc, prog)
            where = (f"traceback in {log}" if log else "run with 'fastcolor --debug' for the traceback")
        message = _one_line(str(exc))[:500]
        say(f"{prog}: error: internal error (a bug in fastcolor, please report it): "
            f"{type(exc).__name__}: {message} ({where})")
        return EXIT_BUG
    finally:
        remove_own_temp_files()
