"""Who may see the dashboard (DESIGN §10): open on a loopback address without keys; with
keys, an ``X-API-Key`` header or the session cookie that the login form hands out.

The cookie holds an expiry and an HMAC of it under a random secret made when the process
starts, so it cannot be forged, lives at most ``SESSION_SECONDS``, and every session ends
when the dashboard restarts (which is also how a removed key stops working).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Sequence

from gravix.errors import ConfigError

COOKIE = "gravix_session"
SESSION_SECONDS = 12 * 3600
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """Whether a listening address (or a Host header's name) only reaches this machine."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name of a Host header without its port (``[::1]:8091`` → ``::1``)."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def check_exposure(host: str, keys: Sequence[str], insecure_no_auth: bool) -> None:
    """Refuse to serve data without a key on an address other machines can reach."""
    if keys or insecure_no_auth or is_loopback(host):
        return
    raise ConfigError(
        f"no API key configured; refusing to serve the dashboard on {host}, which other "
        "machines can reach",
        hint="pass --api-key-file PATH, set API_KEY or GRAVIX_API_KEYS, listen on 127.0.0.1, "
        "or pass --insecure-no-auth",
    )


class Gate:
    """Checks keys and session cookies; ``open`` when no key is configured."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [k.encode() for k in keys]
        self._secret = secrets.token_bytes(32)

    @property
    def open(self) -> bool:
        return not self._keys

    def key_ok(self, given: str | None) -> bool:
        if given is None:
            return False
        candidate = given.encode()
        match = False
        for key in self._keys:  # every key is compared, so the time says nothing
            match |= hmac.compare_digest(key, candidate)
        return match

    def new_session(self, now: float | None = None) -> str:
        expires = int((now or time.time()) + SESSION_SECONDS)
        return f"{expires}.{self._sign(expires)}"

    def session_ok(self, token: str | None, now: float | None = None) -> bool:
        if not token or "." not in token or len(token) > 128:
            return False
        expires, _, signature = token.partition(".")
        if not (expires.isascii() and expires.isdigit()):
            return False
        if not hmac.compare_digest(self._sign(int(expires)), signature):
            return False
        return int(expires) > (now or time.time())

    def allows(self, api_key: str | None, cookie: str | None) -> bool:
        return self.open or self.key_ok(api_key) or self.session_ok(cookie)

    def _sign(self, expires: int) -> str:
        return hmac.new(self._secret, str(expires).encode(), hashlib.sha256).hexdigest()
