"""Read Qt resource archives (.rcc, as written by ``rcc --binary``).

The Debian package ``gcompris-qt-data`` keeps its photos inside such archives;
this reader lists and extracts their files without Qt.

Format (all integers big-endian):

- header: ``b"qres"``, version u32 (1, 2 or 3), tree offset u32, data offset u32,
  names offset u32, and from version 3 on an overall-flags u32 (which
  compression methods occur in the archive).
- tree: an array of nodes, node 0 is the root directory. A node is
  ``name_offset u32, flags u16`` followed by either ``child_count u32,
  first_child u32`` (directories: children are nodes ``first_child ..
  first_child + child_count - 1``) or ``country u16, language u16,
  data_offset u32`` (files); versions 2+ append a last-modified u64 (ms since
  the epoch). So a node is 14 bytes in version 1 and 22 bytes after.
- names: at ``names + name_offset``: length u16 (UTF-16 code units), hash u32,
  then the name in UTF-16BE.
- data: at ``data + data_offset``: length u32, then the bytes. Node flag 1:
  zlib-compressed as Qt's ``qCompress`` (a u32 uncompressed size, then a zlib
  stream); flag 4: one zstd frame; flag 2 marks a directory.

A file may appear several times in one directory under different locales;
:meth:`RccArchive.files` lists each path once and :meth:`RccArchive.read`
returns the first entry (the one rcc writes for the default locale first).
"""

from __future__ import annotations

import fnmatch
import os
import struct
import zlib
from pathlib import Path

from ...atomic import write_bytes_atomic

MAGIC = b"qres"
COMPRESSED = 0x01
DIRECTORY = 0x02
COMPRESSED_ZSTD = 0x04

__all__ = ["RccArchive", "COMPRESSED", "DIRECTORY", "COMPRESSED_ZSTD"]


def _zstd_decompress(blob: bytes, where: str) -> bytes:
    """Decompress one zstd frame with whichever decoder is installed."""
    try:  # Python 3.14+
        from compression import zstd  # type: ignore[import-not-found]

        return zstd.decompress(blob)
    except ImportError:
        pass
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        raise ValueError(
            f"{where} is zstd-compressed and no zstd decoder is installed "
            "(pip install zstandard, or use Python 3.14+)"
        ) from None
    # Qt writes frames with the content size set; max_output_size covers frames without it.
    return zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 31)


class RccArchive:
    """A Qt .rcc archive read fully into memory.

    ``RccArchive(path_or_bytes)``; ``files()`` -> sorted list of the file paths
    inside ("dir/sub/name.webp", no leading slash); ``read(name)`` -> the
    (decompressed) bytes; ``extract(dest, filter=None)`` writes files below
    dest. Raises ValueError on input that is not an rcc archive, or that is
    truncated or corrupt.
    """

    def __init__(self, source: str | os.PathLike | bytes | bytearray | memoryview):
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.name = "<bytes>"
            self._buf = bytes(source)
        else:
            self.name = os.fspath(source)
            with open(self.name, "rb") as f:
                self._buf = f.read()
        buf = self._buf
        if len(buf) < 20 or buf[:4] != MAGIC:
            raise ValueError(f"{self.name}: not a Qt resource archive (no 'qres' magic)")
        self.version, self._tree, self._data, self._names = struct.unpack_from(">4I", buf, 4)
        if self.version not in (1, 2, 3):
            raise ValueError(f"{self.name}: unsupported rcc format version {self.version}")
        self.flags = 0
        if self.version >= 3:
            self.flags = self._unpack(">I", 20, "header")[0]
        self._node_size = 14 if self.version == 1 else 22
        self._entries: dict[str, tuple[int, int]] = {}  # path -> (flags, data offset)
        self._walk()

    # -- parsing --------------------------------------------------------------

    def _unpack(self, fmt: str, offset: int, what: str):
        size = struct.calcsize(fmt)
        if offset < 0 or offset + size > len(self._buf):
            raise ValueError(
                f"{self.name}: truncated or corrupt archive ({what} at byte {offset} "
                f"runs past the end, {len(self._buf)} bytes)"
            )
        return struct.unpack_from(fmt, self._buf, offset)

    def _node(self, index: int):
        """(name_offset, flags, a, b) with (a, b) = (child_count, first_child)
        for directories and (locale, data_offset) for files."""
        off = self._tree + index * self._node_size
        name_off, flags = self._unpack(">IH", off, f"tree node {index}")
        if flags & DIRECTORY:
            count, first = self._unpack(">II", off + 6, f"tree node {index}")
            return name_off, flags, count, first
        _, data_off = self._unpack(">II", off + 6, f"tree node {index}")
        return name_off, flags, None, data_off

    def _name(self, name_off: int) -> str:
        off = self._names + name_off
        (length,) = self._unpack(">H", off, "name length")
        end = off + 6 + 2 * length
        if end > len(self._buf):
            raise ValueError(f"{self.name}: truncated or corrupt archive (name at byte {off})")
        return self._buf[off + 6 : end].decode("utf-16-be", errors="replace")

    def _walk(self):
        name_off, flags, count, first = self._node(0)
        if not flags & DIRECTORY:
            raise ValueError(f"{self.name}: corrupt archive (the root node is not a directory)")
        max_nodes = max(0, (len(self._buf) - self._tree) // self._node_size)
        seen = {0}
        stack = [("", count, first)]
        while stack:
            prefix, count, first = stack.pop()
            if first + count > max_nodes:
                raise ValueError(f"{self.name}: truncated or corrupt archive (directory children past the end)")
            for i in range(first, first + count):
                if i in seen:  # a node reached twice: a cycle or shared subtree
                    raise ValueError(f"{self.name}: corrupt archive (tree node {i} reached twice)")
                seen.add(i)
                name_off, flags, count_i, arg = self._node(i)
                path = prefix + self._name(name_off)
                if flags & DIRECTORY:
                    stack.append((path + "/", count_i, arg))
                else:
                    self._entries.setdefault(path, (flags, arg))

    # -- public API -----------------------------------------------------------

    def files(self) -> list[str]:
        """Sorted paths of all files inside, e.g. ``"gcompris/src/x.webp"``."""
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name.lstrip(":/") in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def read(self, name: str) -> bytes:
        """The decompressed bytes of one file (``name`` as listed by files();
        a leading ":/" or "/" is ignored)."""
        key = name.lstrip(":/")
        if key not in self._entries:
            raise KeyError(f"{self.name}: no file {name!r} in the archive")
        flags, data_off = self._entries[key]
        where = f"{self.name}:{key}"
        off = self._data + data_off
        (size,) = self._unpack(">I", off, f"data of {key}")
        if off + 4 + size > len(self._buf):
            raise ValueError(f"{where}: truncated archive (data runs past the end)")
        blob = self._buf[off + 4 : off + 4 + size]
        if flags & COMPRESSED:
            if size < 4:
                raise ValueError(f"{where}: corrupt compressed data")
            (expected,) = struct.unpack_from(">I", blob, 0)
            try:
                out = zlib.decompress(blob[4:])
            except zlib.error as e:
                raise ValueError(f"{where}: corrupt zlib data ({e})") from None
            if len(out) != expected:
                raise ValueError(f"{where}: zlib data gives {len(out)} bytes, header says {expected}")
            return out
        if flags & COMPRESSED_ZSTD:
            try:
                return _zstd_decompress(blob, where)
            except ValueError:
                raise
            except Exception as e:  # the decoders' own error types
                raise ValueError(f"{where}: corrupt zstd data ({e})") from None
        return blob

    def extract(self, dest: str | os.PathLike, filter=None) -> list[Path]:
        """Write files below ``dest`` (keeping their folders) and return the paths
        written. ``filter``: None (all files), a glob pattern matched against the
        path inside (e.g. ``"*.webp"``), or a callable ``path -> bool``. Each file
        is written atomically (temp file + os.replace)."""
        dest = Path(dest)
        if filter is None:
            keep = lambda p: True  # noqa: E731
        elif isinstance(filter, str):
            pattern = filter
            keep = lambda p: fnmatch.fnmatch(p, pattern)  # noqa: E731
        else:
            keep = filter
        written = []
        root = dest.resolve()
        for name in self.files():
            if not keep(name):
                continue
            target = (dest / name).resolve()
            if root not in target.parents:  # names with ".." must not escape dest
                raise ValueError(f"{self.name}: file name {name!r} points outside the destination")
            write_bytes_atomic(target, self.read(name))
            written.append(target)
        return written

    def __repr__(self) -> str:
        return f"RccArchive({self.name!r}, version={self.version}, files={len(self._entries)})"
