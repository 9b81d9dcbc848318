"""fastcolor.data.photoset.rcc against archives built here by a small writer of the format
(as Qt's rcc lays it out: header, data, names, tree; children sorted by name hash)."""

import os
import struct
import zlib

import pytest

from fastcolor.data.photoset.rcc import RccArchive


def qt_hash(name):
    """qt_hash of a QString (the value rcc stores next to each name)."""
    h = 0
    for unit in struct.unpack(f">{len(name.encode('utf-16-be')) // 2}H", name.encode("utf-16-be")):
        h = ((h << 4) + unit) & 0xFFFFFFFF
        h ^= (h & 0xF0000000) >> 23
        h &= 0x0FFFFFFF
    return h


def write_rcc(files, version=3, compress=(), zstd=(), extra_locale=None):
    """Archive bytes from {path: bytes}; paths in ``compress`` are stored
    zlib-compressed (qCompress layout), those in ``zstd`` flagged as zstd."""
    tree = {}
    for path, data in files.items():
        node = tree
        parts = path.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = path

    data_blob, names_blob, name_off = bytearray(), bytearray(), {}

    def add_name(n):
        if n not in name_off:
            name_off[n] = len(names_blob)
            units = n.encode("utf-16-be")
            names_blob.extend(struct.pack(">HI", len(units) // 2, qt_hash(n)) + units)
        return name_off[n]

    # breadth-first numbering: a directory's children are consecutive nodes
    nodes = [["", 0x02, None, tree]]  # [name, flags, (count, first) or data offset, subtree/path]
    i = 0
    while i < len(nodes):
        name, flags, _, sub = nodes[i]
        if flags & 0x02:
            children = sorted(sub.items(), key=lambda kv: qt_hash(kv[0]))
            first = len(nodes)
            for cname, csub in children:
                if isinstance(csub, dict):
                    nodes.append([cname, 0x02, None, csub])
                else:
                    payload = files[csub]
                    cflags = 0
                    if csub in compress:
                        payload = struct.pack(">I", len(payload)) + zlib.compress(payload)
                        cflags = 0x01
                    elif csub in zstd:
                        cflags = 0x04
                    off = len(data_blob)
                    data_blob.extend(struct.pack(">I", len(payload)) + payload)
                    nodes.append([cname, cflags, off, csub])
            nodes[i][2] = (len(children), first)
        i += 1

    header_size = 20 if version < 3 else 24
    data_at = header_size
    names_start = data_at + len(data_blob)
    for n in nodes:
        add_name(n[0])
    tree_at = names_start + len(names_blob)
    out = bytearray(b"qres" + struct.pack(">IIII", version, tree_at, data_at, names_start))
    if version >= 3:
        out += struct.pack(">I", 0x01 if compress else 0)
    out += data_blob + names_blob
    for name, flags, arg, _ in nodes:
        out += struct.pack(">IH", name_off[name], flags)
        if flags & 0x02:
            out += struct.pack(">II", *arg)
        else:
            out += struct.pack(">HHI", 0, 1, arg)
        if version >= 2:
            out += struct.pack(">Q", 1_700_000_000_000)
    return bytes(out)


FILES = {
    "README": b"Copyright: someone\nLicense: CC0-1.0\nFiles: a.webp\n",
    "img/a.webp": os.urandom(300),
    "img/deep/er/b.bin": b"\x00" * 5000 + b"tail",
    "img/empty.txt": b"",
    "img/ünïcödé 🐱.txt": "héllo".encode(),
    "docs/c.txt": b"c" * 100,
}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_roundtrip(version, tmp_path):
    blob = write_rcc(FILES, version=version, compress={"img/deep/er/b.bin", "docs/c.txt"})
    arc = RccArchive(blob)
    assert arc.version == version
    assert arc.files() == sorted(FILES)
    for name, data in FILES.items():
        assert arc.read(name) == data
    assert arc.read(":/img/a.webp") == FILES["img/a.webp"]  # Qt's resource prefix accepted
    # from a path too
    (tmp_path / "x.rcc").write_bytes(blob)
    arc = RccArchive(tmp_path / "x.rcc")
    assert len(arc) == len(FILES) and "img/a.webp" in arc
    with pytest.raises(KeyError):
        arc.read("img/nope")


def test_extract_with_filter(tmp_path):
    arc = RccArchive(write_rcc(FILES, compress={"img/a.webp"}))
    written = arc.extract(tmp_path / "out", "img/*.webp")
    assert written == [(tmp_path / "out/img/a.webp").resolve()]
    assert written[0].read_bytes() == FILES["img/a.webp"]
    written = arc.extract(tmp_path / "all")
    assert len(written) == len(FILES)
    for name, data in FILES.items():
        assert (tmp_path / "all" / name).read_bytes() == data
    written = arc.extract(tmp_path / "txt", lambda p: p.endswith(".txt"))
    assert sorted(p.name for p in written) == ["c.txt", "empty.txt", "ünïcödé 🐱.txt"]
    assert not [p for p in (tmp_path / "all").rglob(".tmp-*")]


def test_escaping_names_rejected(tmp_path):
    arc = RccArchive(write_rcc({"../evil.txt": b"x"}))
    with pytest.raises(ValueError, match="outside"):
        arc.extract(tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_not_rcc():
    with pytest.raises(ValueError, match="not a Qt resource"):
        RccArchive(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(ValueError, match="not a Qt resource"):
        RccArchive(b"")
    bad = bytearray(write_rcc(FILES))
    bad[4:8] = struct.pack(">I", 7)
    with pytest.raises(ValueError, match="version 7"):
        RccArchive(bytes(bad))


@pytest.mark.parametrize("version", [1, 3])
def test_truncated(version):
    blob = write_rcc(FILES, version=version)
    # the tree is at the end: any cut into it is found when the archive is opened
    for cut in (len(blob) - 1, len(blob) - 10, 30, 21):
        with pytest.raises(ValueError, match="truncated|corrupt|not a Qt"):
            RccArchive(blob[:cut])


def test_corrupt_data():
    blob = bytearray(write_rcc({"a.bin": b"a" * 1000}, compress={"a.bin"}))
    # data starts after the 24-byte header: u32 size, u32 uncompressed size, zlib stream
    blob[24 + 8 + 2 : 24 + 8 + 12] = b"\xff" * 10
    arc = RccArchive(bytes(blob))
    with pytest.raises(ValueError, match="corrupt zlib|gives"):
        arc.read("a.bin")
    blob = bytearray(write_rcc({"a.bin": b"abc"}))
    blob[24:28] = struct.pack(">I", 10**6)  # data length past the end
    with pytest.raises(ValueError, match="truncated"):
        RccArchive(bytes(blob)).read("a.bin")


def test_cycle_rejected():
    blob = bytearray(write_rcc({"d/x": b"1"}, version=1))
    tree_at = struct.unpack(">I", blob[8:12])[0]
    # make directory node 1 ("d") point back at node 0's children (itself)
    blob[tree_at + 14 + 6 : tree_at + 14 + 14] = struct.pack(">II", 1, 1)
    with pytest.raises(ValueError, match="twice"):
        RccArchive(bytes(blob))


def test_zstd():
    payload = b"zstd payload " * 50
    try:
        from compression import zstd as z  # Python 3.14+

        frame = z.compress(payload)
    except ImportError:
        try:
            import zstandard

            frame = zstandard.ZstdCompressor().compress(payload)
        except ImportError:
            frame = None
    if frame is None:
        arc = RccArchive(write_rcc({"z.bin": b"\x28\xb5\x2f\xfd" + b"\x00" * 8}, zstd={"z.bin"}))
        with pytest.raises(ValueError, match="no zstd decoder"):
            arc.read("z.bin")
    else:
        arc = RccArchive(write_rcc({"z.bin": frame}, zstd={"z.bin"}))
        assert arc.read("z.bin") == payload


def test_writer_hash_matches_real_archives():
    """Names and hashes as stored in Debian gcompris-qt-data 3.1-2's
    explore_monuments.rcc (the reader was run over all 186 archives of that
    package: every file read back, every stored hash equal to qt_hash)."""
    real = {
        "gcompris": 174355619,
        "src": 31363,
        "activities": 14441123,
        "meidumPyramid.webp": 119225552,
        "greatPyramidOfGiza.webp": 144229136,
        "redPyramid.webp": 209004816,
    }
    assert {n: qt_hash(n) for n in real} == real
