"""The page's files: ours from ``static/`` in this package, and plotly.js's cartesian
partial bundle (line, bar and heatmap charts: a third of the full bundle, so a fresh
browser parses it in a fraction of the time) from the npm package that ``package-lock.json``
pins and ``make install`` installs into ``node_modules/`` beside the source — never copied
into the repository, never fetched from a CDN. Each is read once, compressed once, and
served with an ETag."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import html
from dataclasses import dataclass
from pathlib import Path

from gravix.errors import ConfigError

STATIC = Path(__file__).resolve().parent / "static"
PLOTLY_JS = "plotly-cartesian.min.js"
PLOTLY_PACKAGE = "plotly.js-cartesian-dist-min"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    media_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, name: str) -> Asset:
        digest = hashlib.sha256(body).hexdigest()[:20]
        media_type = _TYPES.get(Path(name).suffix, "application/octet-stream")
        return cls(body, gzip.compress(body, 6, mtime=0), media_type, f'"{digest}"')


def plotly_path(start: Path = STATIC) -> Path:
    """The bundle in the nearest ``node_modules/`` above ``start`` (the source checkout's)."""
    for folder in start.parents:
        path = folder / "node_modules" / PLOTLY_PACKAGE / PLOTLY_JS
        if path.is_file():
            return path
    raise ConfigError(
        f"plotly.js was not found: the dashboard serves {PLOTLY_PACKAGE}/{PLOTLY_JS} from "
        "node_modules/ beside the source",
        hint="run `make install` (it runs `npm ci` on package-lock.json)",
    )


@functools.cache
def _bundle(path: Path) -> Asset:
    """The chart library, read and compressed once per process (every app shares it)."""
    return Asset.of(path.read_bytes(), path.name)


class Assets:
    """Every file the page loads, by the name it is served under /static/."""

    def __init__(self, *, ingest_url: str, auth: bool = False) -> None:
        self.files: dict[str, Asset] = {}
        for path in sorted(STATIC.iterdir()):
            if path.is_file() and path.suffix in _TYPES and path.suffix != ".html":
                self.files[path.name] = Asset.of(path.read_bytes(), path.name)
        # compressed now, before the server listens, not on a fresh browser's first request
        # (a missing bundle is said on the request for it, with the command that installs it)
        self._plotly: Asset | None = None
        with contextlib.suppress(ConfigError):
            self._plotly = _bundle(plotly_path())
        version = hashlib.sha256(
            b"".join(a.etag.encode() for a in self.files.values())
        ).hexdigest()[:12]
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        page = page.replace("{{version}}", version).replace("{{auth}}", "1" if auth else "")
        page = page.replace("{{ingest_url}}", html.escape(ingest_url, quote=True))
        self.index = Asset.of(page.encode(), "index.html")
        self.login = Asset.of((STATIC / "login.html").read_bytes(), "login.html")

    def get(self, name: str) -> Asset | None:
        if name == PLOTLY_JS:
            if self._plotly is None:
                self._plotly = _bundle(plotly_path())
            return self._plotly
        return self.files.get(name)

    def login_page(self, message: str = "", next_url: str = "/") -> bytes:
        text = self.login.body.decode().replace("{{next}}", html.escape(next_url, quote=True))
        return text.replace("{{message}}", html.escape(message)).encode()
