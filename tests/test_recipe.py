"""The data recipe's pure parts, with fake sources reading from tmp_path
(no network)."""

import hashlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fastcolor.data.photoset import recipe, sources
from fastcolor.data.photoset.recipe import Candidate, Source, build_photo_set, is_photo, split_for


def _png(arr, mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def _photo(gen, h=240, w=320):
    """Random colourful noise: passes the size, opacity and colour rules."""
    r = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen)))
    return _png(r.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_split_rule():
    names = [f"photo{i}.jpg" for i in range(4000)]
    splits = [split_for("src", n) for n in names]
    assert splits == [split_for("src", n) for n in names]  # deterministic
    frac = splits.count("val") / len(splits)
    assert 0.08 < frac < 0.12
    assert all(split_for("skimage", n, val_only=True) == "val" for n in names[:50])
    # the rule is the documented one
    h = int(hashlib.sha256(b"src/photo7.jpg").hexdigest()[:8], 16)
    assert split_for("src", "photo7.jpg") == ("val" if h % 100 < 10 else "train")


def test_is_photo_rules(gen):
    ok, reason, w, h = is_photo(_photo(gen))
    assert ok and (w, h) == (320, 240)
    assert is_photo(_photo(gen, 150, 400))[1].startswith("small")
    gray = np.repeat(np.asarray(Image.open(io.BytesIO(_photo(gen))).convert("L"))[..., None], 3, axis=2)
    assert is_photo(_png(np.ascontiguousarray(gray)))[1].startswith("no colour")
    rgba = np.asarray(Image.open(io.BytesIO(_photo(gen))).convert("RGBA")).copy()
    rgba[:100, :, 3] = 0
    assert is_photo(_png(rgba, "RGBA"))[1] == "transparent"
    assert is_photo(b"not an image")[1].startswith("unreadable")


def test_parse_credits_and_dep5():
    text = (
        "Copyright: A Person\nSource: https://commons.wikimedia.org/wiki/File:X_y.JPG\n"
        "License: CC0-1.0\nFiles:\na.webp\nsub/b.webp\n\n"
        "Copyright: Someone\nLicense: GPLv3\nFiles: c.webp d.webp\n"
    )
    blocks = sources.parse_credits(text)
    assert blocks[0]["files"] == ["a.webp", "sub/b.webp"] and blocks[1]["files"] == ["c.webp d.webp"]
    assert sources._is_photo_source(blocks[0]["source"][0])
    assert not sources._is_photo_source("https://commons.wikimedia.org/wiki/File:Drawing.svg")
    dep5 = (
        "Files: *\nCopyright: MIT\nLicense: GPL-2\n\n"
        "Files: Help/* Media/*\nCopyright: MIT 2011\nLicense: CC-BY-SA-3.0\n\n"
        "License: CC-BY-SA-3.0\n long text\n"
    )
    assert sources._dep5_licence(dep5, "Media/Backgrounds/Nature/x.jpg") == "Copyright: MIT 2011; License: CC-BY-SA-3.0"
    assert sources._dep5_licence(dep5, "src/a.c") == "Copyright: MIT; License: GPL-2"


class FakeSource:
    """A source whose files live in a folder; counts how often it is fetched."""

    def __init__(self, folder, licence="CC0"):
        self.folder = folder
        self.licence = licence
        self.calls = 0

    def __call__(self, workdir):
        self.calls += 1
        return "1.0", [
            Candidate(path_in_package=f"pkg/{p.name}", data=p.read_bytes(), licence=self.licence)
            for p in sorted(self.folder.iterdir())
        ]


@pytest.fixture
def fake(tmp_path, gen):
    src_dir = tmp_path / "pkg"
    src_dir.mkdir()
    for i in range(25):
        (src_dir / f"p{i:02d}.png").write_bytes(_photo(gen, 200 + i, 210))
    (src_dir / "tiny.png").write_bytes(_photo(gen, 20, 20))
    (src_dir / "broken.png").write_bytes(b"garbage")
    demo_dir = tmp_path / "demo"
    demo_dir.mkdir()
    (demo_dir / "demo.png").write_bytes(_photo(gen))
    return FakeSource(src_dir), FakeSource(demo_dir, "PD")


def test_build_manifest_and_idempotence(tmp_path, fake, capsys):
    src, demo = fake
    sources = [Source("fake", "fake-pkg", src), Source("demo", "demo-pkg", demo, val_only=True)]
    out = tmp_path / "out"
    m = build_photo_set(out, progress=False, sources=sources)
    assert src.calls == 1 and demo.calls == 1
    assert m["sources"]["fake"]["photos"] == 25
    assert m["sources"]["fake"]["rejected"] == {"small": 1, "unreadable": 1}
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == m
    for rel, e in m["photos"].items():
        p = out / rel
        assert rel == f"{e['split']}/{e['source']}/{p.name}"
        assert hashlib.sha256(p.read_bytes()).hexdigest() == e["sha256"]
        assert p.read_bytes() == (tmp_path / ("demo" if e["source"] == "demo" else "pkg") / p.name).read_bytes()
        assert e["split"] == split_for(e["source"], e["path_in_package"], e["source"] == "demo")
        assert e["package"] in ("fake-pkg", "demo-pkg") and e["version"] == "1.0" and e["licence"]
        assert Image.open(p).size == (e["width"], e["height"])
    assert m["photos"]["val/demo/demo.png"]["split"] == "val"
    assert not list(out.rglob(".tmp-*"))

    # second run: everything in place, nothing fetched, same manifest
    m2 = build_photo_set(out, progress=False, sources=sources)
    assert src.calls == 1 and demo.calls == 1 and m2 == m

    # a damaged file makes its source be fetched again, and repaired
    victim = next(rel for rel, e in m["photos"].items() if e["source"] == "fake")
    (out / victim).write_bytes(b"damaged")
    m3 = build_photo_set(out, progress=False, sources=sources)
    assert src.calls == 2 and demo.calls == 1 and m3 == m
    assert hashlib.sha256((out / victim).read_bytes()).hexdigest() == m["photos"][victim]["sha256"]

    print(recipe.summary(m3, out))
    text = capsys.readouterr().out
    assert "fake" in text and "total" in text and "26 photos" in text


def test_failing_source_is_reported(tmp_path, fake, capsys):
    src, _ = fake

    def broken(workdir):
        raise recipe.SourceError("registry unreachable")

    sources = [Source("broken", "nowhere", broken), Source("fake", "fake-pkg", src)]
    m = build_photo_set(tmp_path / "out", progress=False, sources=sources)
    assert m["sources"]["broken"]["status"] == "failed"
    assert "unreachable" in m["sources"]["broken"]["error"]
    assert m["sources"]["fake"]["photos"] == 25
    assert "cannot fetch nowhere" in capsys.readouterr().err


def test_main_exit_codes(tmp_path, fake, monkeypatch):
    src, _ = fake

    def broken(workdir):
        raise recipe.SourceError("offline")

    monkeypatch.setattr(recipe, "SOURCES", [Source("broken", "nowhere", broken)])
    assert recipe.main(["--out", str(tmp_path / "none"), "--quiet"]) == 1
    monkeypatch.setattr(recipe, "SOURCES", [Source("broken", "nowhere", broken), Source("fake", "fake-pkg", src)])
    assert recipe.main(["--out", str(tmp_path / "some"), "--quiet"]) == 0


def test_unlisted_files_removed_and_bad_manifest_ignored(tmp_path, fake):
    src, _ = fake
    out = tmp_path / "out"
    (out / "train" / "fake").mkdir(parents=True)
    (out / "train" / "fake" / "stale.png").write_bytes(b"old")
    (out / "manifest.json").write_text("{not json")
    m = build_photo_set(out, progress=False, sources=[Source("fake", "fake-pkg", src)])
    assert not (out / "train" / "fake" / "stale.png").exists()
    assert len(m["photos"]) == 25
