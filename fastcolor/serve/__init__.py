"""fastcolor serve: a local web page to colorize a photo, steer it with hints
and a palette, and download the result (README: A local web page).

    from fastcolor.serve import create_app
    app = create_app(colorizer)          # a FastAPI app; run it with uvicorn

API (all local; the page is fastcolor/serve/page.html, no CDN):

* ``GET /``: the page.
* ``POST /api/photo``: the raw image bytes as the body (at most
  ``max_upload_bytes``). Runs the network once and keeps its output in a
  bounded in-memory cache (``PhotoCache``: at most ``cache_items`` photos,
  each for at most ``cache_age_s`` seconds since last use). Returns
  ``{"id", "width", "height", "temperature"}``; a body that is not an image:
  415 with a one-line message; too large: 413.
* ``POST /api/colorize``: JSON ``{"id", "temperature", "hints": [[x, y,
  "#RRGGBB"], ...], "palette": "#RRGGBB,..." or null, "palette_mode":
  "restrict" | "bias"}`` -> the result as PNG, decoded from the cached network
  output (the network does not run again). Unknown or expired id: 404.

Photos larger than ``max_side`` on their longer side are downscaled first
(hint coordinates are pixels of that image). Nothing is written to disk:
uploads are read into memory (no multipart spooling), results are encoded in
memory.
"""


import collections
import io
import json
import threading
import time
import uuid
from pathlib import Path

from ..inference import Prepared

__all__ = ["PhotoCache", "Prepared", "create_app", "serve", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_MAX_SIDE", "MAX_HINTS",
           "MAX_HINT_POINTS", "MAX_PALETTE_COLOURS", "MAX_REQUEST_BYTES"]

DEFAULT_MAX_UPLOAD_MB = 20
DEFAULT_MAX_SIDE = 1024
DEFAULT_CACHE_ITEMS = 8
DEFAULT_CACHE_AGE_S = 600.0
MAX_HINTS = 200
MAX_HINT_POINTS = 2000  # points of all the hints' strokes together
MAX_PALETTE_COLOURS = 64
MAX_REQUEST_BYTES = 256 * 2**10  # a colorize request (JSON)
PAGE = Path(__file__).with_name("page.html")


class PhotoCache:
    """The network's output for recent photos, in memory: at most max_items
    photos, each dropped max_age_s seconds after its last use (least recently
    used first when full). Thread-safe."""

    def __init__(self, max_items=DEFAULT_CACHE_ITEMS, max_age_s=DEFAULT_CACHE_AGE_S, clock=time.monotonic):
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self.max_items, self.max_age_s, self.clock = int(max_items), float(max_age_s), clock
        self._items = collections.OrderedDict()  # id -> (last use, value)
        self._lock = threading.Lock()

    def _expire(self, now):
        for key in [k for k, (t, _) in self._items.items() if now - t > self.max_age_s]:
            del self._items[key]

    def put(self, value):
        key = uuid.uuid4().hex
        with self._lock:
            now = self.clock()
            self._expire(now)
            self._items[key] = (now, value)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return key

    def get(self, key):
        with self._lock:
            now = self.clock()
            self._expire(now)
            item = self._items.get(key)
            if item is None:
                return None
            self._items[key] = (now, item[1])
            self._items.move_to_end(key)
            return item[1]

    def __len__(self):
        with self._lock:
            self._expire(self.clock())
            return len(self._items)


def decode_photo(data, max_side=DEFAULT_MAX_SIDE):
    """Image bytes -> rgb float32 (3, H, W) in [0, 1] (EXIF-rotated, downscaled
    to at most max_side); ValueError with a one-line message for non-images."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from ..data.images import read_image_float

    try:
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        why = "unknown format" if isinstance(exc, UnidentifiedImageError) else (str(exc).splitlines() or ["unreadable"])[0]
        raise ValueError(f"this file is not an image fastcolor can read ({why}); "
                         "try a PNG, JPEG or WebP photo") from None
    if max(im.size) > max_side:
        im = im.copy()
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    rgb, _ = read_image_float(im)
    return rgb


def create_app(colorizer, max_upload_bytes=DEFAULT_MAX_UPLOAD_MB * 2**20, max_side=DEFAULT_MAX_SIDE,
               cache=None):
    """The FastAPI app of the page, for one Colorizer (classification model)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    if colorizer.loss == "l2":
        raise ValueError("the page steers the predicted colour distribution; this model regresses chroma "
                         "(loss='l2'): use a classification model")
    cache = PhotoCache() if cache is None else cache
    lock = threading.Lock()  # one network / decode at a time
    app = FastAPI(title="fastcolor", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.cache = cache
    page = PAGE.read_text(encoding="utf-8")

    def fail(status, message):
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def read_body(request, limit):
        """The request's body, or None when it is over limit bytes."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/api/photo")
    async def photo(request: Request):
        data = await read_body(request, max_upload_bytes)
        if data is None:
            return fail(413, f"the photo is too large: at most {max_upload_bytes / 2**20:g} MB")
        if not data:
            return fail(400, "no photo was sent (empty body)")
        try:
            rgb = decode_photo(data, max_side)
        except ValueError as exc:
            return fail(415, str(exc))

        def run():
            with lock:
                return Prepared(colorizer, rgb)

        prepared = await run_in_threadpool(run)
        key = cache.put(prepared)
        h, w = prepared.size
        return {"id": key, "width": w, "height": h, "temperature": colorizer.temperature}

    @app.post("/api/colorize")
    async def colorize(request: Request):
        data = await read_body(request, MAX_REQUEST_BYTES)
        if data is None:
            return fail(413, f"the request is too large: at most {MAX_REQUEST_BYTES // 2**10} KB")
        try:
            body = json.loads(data)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            return fail(400, 'the request must be a JSON object {"id": ..., "hints": [...], ...}')
        return await run_in_threadpool(render, body)

    def render(body):
        prepared = cache.get(str(body.get("id", "")))
        if prepared is None:
            return fail(404, "this photo is no longer in memory (expired or never uploaded): upload it again")
        hints = body.get("hints") or []
        if not isinstance(hints, list) or len(hints) > MAX_HINTS:
            return fail(400, f"hints must be a list of at most {MAX_HINTS} [x, y, \"#RRGGBB\"]")
        palette = body.get("palette") or None
        try:
            from ..hints import Palette, as_hints, check_inside

            hints = as_hints(hints)
            if sum(len(hint.points) for hint in hints) > MAX_HINT_POINTS:
                raise ValueError(f"the hints hold too many points: at most {MAX_HINT_POINTS} in all")
            h, w = prepared.size
            check_inside(hints, (h, w))
            if palette is not None:  # colours only: the page never names a file to read
                if not isinstance(palette, str):
                    raise ValueError("palette: write it as #RRGGBB,#RRGGBB,...")
                colours = tuple(c.strip() for c in palette.split(",") if c.strip())
                if len(colours) > MAX_PALETTE_COLOURS:
                    raise ValueError(f"the palette has too many colours: at most {MAX_PALETTE_COLOURS}")
                palette = Palette(colors=colours, mode=body.get("palette_mode") or "restrict")
            temperature = body.get("temperature")
            with lock:
                rgb = prepared.render(colorizer, temperature, hints, palette)
        except ValueError as exc:
            return fail(400, str(exc).splitlines()[0])
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb.permute(1, 2, 0).numpy()).save(buf, format="PNG", compress_level=1)
        return Response(buf.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})

    return app


def serve(colorizer, host="127.0.0.1", port=8000, **kwargs):
    """Run the page with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(colorizer, **kwargs), host=host, port=port, log_level="warning")
