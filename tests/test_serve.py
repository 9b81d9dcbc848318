"""fastcolor serve: the API (FastAPI's TestClient) and the page in a real
headless Chromium (Playwright pointed at Debian's /usr/bin/chromium).

FASTCOLOR_SERVE_SCREENSHOT=PATH also saves a screenshot of the page there
(docs/serve.png is made so, with FASTCOLOR_SERVE_MODEL=bundled)."""

import io
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

fastapi = pytest.importorskip("fastapi", reason="fastapi is not installed (tools/setup.sh installs it)")
pytest.importorskip("uvicorn", reason="uvicorn is not installed (tools/setup.sh installs it)")
pytest.importorskip("httpx", reason="httpx (FastAPI's TestClient) is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from fastcolor.inference import Colorizer  # noqa: E402
from fastcolor.serve import MAX_HINT_POINTS, MAX_PALETTE_COLOURS, MAX_REQUEST_BYTES, PhotoCache, create_app  # noqa: E402

EDGE = 64  # the photo: dark left of x = EDGE, bright right of it


def _photo_png(w=128, h=96):
    """A gray photo with a strong vertical lightness edge and a little texture."""
    rng = np.random.default_rng(0)
    arr = np.where(np.arange(w)[None, :] < EDGE, 40, 215).astype(np.float32) * np.ones((h, 1), np.float32)
    arr += rng.normal(0, 4, (h, w))
    buf = io.BytesIO()
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def colorizer(model_file):
    if os.environ.get("FASTCOLOR_SERVE_MODEL") == "bundled":
        return Colorizer.load(None, device="cpu")
    return Colorizer.load(model_file, device="cpu")


@pytest.fixture
def client(colorizer):
    return TestClient(create_app(colorizer, max_upload_bytes=200_000, cache=PhotoCache(max_items=2)))


def _decode(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def test_page_is_served_without_external_resources(client):
    r = client.get("/")
    assert r.status_code == 200 and "<title>fastcolor</title>" in r.text
    assert "http://" not in r.text and "https://" not in r.text  # no CDN: works offline


def test_upload_colorize_and_hint_without_rerunning_the_network(client, colorizer, monkeypatch):
    r = client.post("/api/photo", content=_photo_png())
    assert r.status_code == 200, r.text
    info = r.json()
    assert (info["width"], info["height"]) == (128, 96)
    plain = client.post("/api/colorize", json={"id": info["id"], "temperature": 0.38})
    assert plain.status_code == 200 and plain.headers["content-type"] == "image/png"
    # What Colorizer.colorize gives, from the cached network output.
    want = colorizer.colorize(Image.open(io.BytesIO(_photo_png())), temperature=0.38).rgb.permute(1, 2, 0).numpy()
    assert np.abs(_decode(plain.content) - want).max() <= 1
    monkeypatch.setattr(colorizer, "model", None)  # the network must not run again
    hinted = client.post("/api/colorize", json={"id": info["id"], "hints": [[100, 48, "#2040ff"]]})
    assert hinted.status_code == 200, hinted.text
    assert not np.array_equal(_decode(hinted.content), _decode(plain.content))
    pal = client.post("/api/colorize", json={"id": info["id"], "palette": "#2e8b57,#cc2222", "palette_mode": "bias"})
    assert pal.status_code == 200, pal.text


def test_bad_requests_get_clear_messages(client):
    r = client.post("/api/photo", content=b"this is not an image at all")
    assert r.status_code == 415 and "not an image" in r.json()["error"]
    r = client.post("/api/photo", content=b"\0" * 300_000)
    assert r.status_code == 413 and "too large" in r.json()["error"]
    r = client.post("/api/photo", content=b"")
    assert r.status_code == 400
    r = client.post("/api/colorize", json={"id": "nope"})
    assert r.status_code == 404 and "upload it again" in r.json()["error"]
    key = client.post("/api/photo", content=_photo_png()).json()["id"]
    for body, word in [({"hints": [[500, 5, "#ffffff"]]}, "outside"), ({"hints": [[5, 5, "green"]]}, "colour"),
                       ({"temperature": -1}, "temperature"), ({"palette": "/etc/passwd"}, "colour"),
                       ({"palette": "#ff0000", "palette_mode": "x"}, "mode")]:
        r = client.post("/api/colorize", json={"id": key, **body})
        assert r.status_code == 400 and word in r.json()["error"], (body, r.text)
    stroke = {"points": [[1 + i % 50, 2] for i in range(MAX_HINT_POINTS + 1)], "color": "#ff0000"}
    for body, status, word in [({"id": key, "hints": [stroke]}, 400, "too many points"),
                               ({"id": key, "palette": ",".join(["#ff0000"] * (MAX_PALETTE_COLOURS + 1))}, 400,
                                "too many colours"),
                               ([key], 400, "JSON object"), ({"id": key, "pad": "x" * MAX_REQUEST_BYTES}, 413, "too large")]:
        r = client.post("/api/colorize", json=body)
        assert r.status_code == status and word in r.json()["error"], (status, r.text[:200])
    for raw in (b"{not json", b"\xff\xfe", b""):
        r = client.post("/api/colorize", content=raw)
        assert r.status_code == 400 and "JSON object" in r.json()["error"], r.text


def test_cache_is_bounded_by_size_and_age():
    now = [0.0]
    cache = PhotoCache(max_items=2, max_age_s=10, clock=lambda: now[0])
    a, b = cache.put("a"), cache.put("b")
    assert cache.get(a) == "a"  # a is now the most recent
    c = cache.put("c")
    assert cache.get(b) is None and cache.get(a) == "a" and cache.get(c) == "c" and len(cache) == 2
    now[0] = 11
    assert cache.get(a) is None and len(cache) == 0


# ------------------------------------------------------------------ the page in a real browser

CHROMIUM = os.environ.get("FASTCOLOR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(colorizer):
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(create_app(colorizer), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def _result_png(page):
    data = page.evaluate("""async () => {
        const r = await fetch(document.getElementById('download').href);
        return Array.from(new Uint8Array(await r.arrayBuffer()));
    }""")
    return _decode(bytes(data))


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium; tools/setup.sh tries)")
def test_page_in_headless_chromium(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    photo = tmp_path / "edge.png"
    photo.write_bytes(_photo_png())
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.goto(server)
            page.set_input_files("#file", str(photo))
            page.wait_for_function("document.body.dataset.renders === '1'", timeout=15000)
            before = _result_png(page)
            assert before.shape == (96, 128, 3)
            page.fill("#color", "#2040ff")
            box = page.locator("#result").bounding_box()
            hx, hy = 100, 48  # on the bright side, 36 px right of the edge
            started = time.monotonic()
            page.mouse.click(box["x"] + (hx + 0.5) * box["width"] / 128, box["y"] + (hy + 0.5) * box["height"] / 96)
            page.wait_for_function("document.body.dataset.renders === '2'", timeout=15000)
            elapsed = time.monotonic() - started
            after = _result_png(page)
            assert "1 hint" in page.inner_text("#status")
            shot = os.environ.get("FASTCOLOR_SERVE_SCREENSHOT")
            page.screenshot(path=shot or str(tmp_path / "page.png"))
        finally:
            browser.close()
    diff = np.abs(after - before).sum(axis=2)
    near = diff[hy - 8:hy + 8, hx - 8:hx + 8].mean()
    across = diff[:, :EDGE - 8].max()  # dark side, beyond the edge from the hint
    assert near > 10, f"the result did not change near the hint (mean |diff| {near:.1f})"
    assert across <= 3, f"the hint leaked across the lightness edge (max |diff| {across})"
    # the hinted region turned bluer
    assert (after[hy - 8:hy + 8, hx - 8:hx + 8, 2] - after[hy - 8:hy + 8, hx - 8:hx + 8, 0]).mean() > \
        (before[hy - 8:hy + 8, hx - 8:hx + 8, 2] - before[hy - 8:hy + 8, hx - 8:hx + 8, 0]).mean()
    assert elapsed < 5, f"a hint took {elapsed:.2f} s to show"
