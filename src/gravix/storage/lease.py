"""One holder at a time per store (DESIGN §11): a lease object made with the store's
conditional create, where a data root uses an ``flock``.

A lease is a series of numbered generations, ``state/leases/<name>/lease-<n>.json``; the
newest one is the lease. It names its holder (host, pid, node, purpose) and when it
expires. A runner takes the lease by creating generation n+1, and only when generation n
is released or expired. The create is conditional (``If-None-Match: *``), so of two runners
that both find generation n expired exactly one creates n+1; the other reads who won and
is refused. The holder renews its generation from a background thread while it works and
marks it released at the end. A holder that finds a newer generation than its own stalled
past its expiry and was taken over: it has lost the lease and stops before writing more.

Expiry is judged by the wall clocks of the hosts that share the store, so they must keep
them in step (NTP); a lease lasts 60 s by default and is renewed every 20 s, a margin far
above their usual drift.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime

from gravix.errors import GravixError, LockHeld, StoreError
from gravix.storage import layout
from gravix.storage.store import Store
from gravix.units import utc_stamp

ROLLUP_LEASE = "rollup"
_GENERATION = re.compile(r"(\d+)\.json$")


class LeaseLost(GravixError):
    """This process's lease expired and another runner took it over: stop writing."""


@dataclass
class LeaseState:
    """What one generation of a lease says."""

    generation: int
    host: str
    pid: int
    node: str
    purpose: str
    acquired_at: float
    expires_at: float
    released: bool = False

    def live(self, now: float) -> bool:
        return not self.released and self.expires_at > now

    def holder(self) -> str:
        return (
            f"pid {self.pid} on {self.host} (node {self.node}, {self.purpose}, "
            f"since {_stamp(self.acquired_at)})"
        )

    def encode(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes, generation: int) -> LeaseState:
        """A generation whose content cannot be read counts as expired (each write of it
        is whole, so that is a lease no Gravix wrote); fields it does not know are passed
        over, so a lease written by a later version still holds."""
        try:
            doc = json.loads(data)
            known = {f.name for f in fields(cls)}
            values = {k: v for k, v in doc.items() if k in known and k != "generation"}
            return cls(**values, generation=generation)
        except (ValueError, TypeError, AttributeError):
            return cls(generation, "?", 0, "?", "?", 0.0, 0.0)


def _stamp(epoch: float) -> str:
    return utc_stamp(datetime.fromtimestamp(epoch, tz=UTC).replace(microsecond=0))


def _prefix(name: str) -> str:
    return layout.lease_key(name, 0).rpartition("/")[0] + "/"


def current(store: Store, name: str = ROLLUP_LEASE) -> LeaseState | None:
    """The newest generation of lease ``name``, or None if it was never taken."""
    for _ in range(3):
        keys = [info.key for info in store.list(_prefix(name))]
        numbered = sorted((int(m.group(1)), key) for key in keys if (m := _GENERATION.search(key)))
        if not numbered:
            return None
        generation, key = numbered[-1]
        try:
            return LeaseState.decode(store.read(key), generation)
        except FileNotFoundError:
            continue  # pruned by a runner that has just taken it over: look again
    raise StoreError(f"{store.url}: the {name} lease changes too fast to be read")


@dataclass
class Lease:
    """A lease this process holds; :meth:`release` (or leaving the ``with``) gives it up."""

    store: Store
    name: str
    state: LeaseState
    seconds: float
    took_over: LeaseState | None = None  # the expired lease of a runner that died
    clock: Callable[[], float] = field(default=time.time, repr=False)
    _lost: str | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return layout.lease_key(self.name, self.state.generation)

    def renew(self) -> None:
        """Push the expiry out again, unless a newer generation shows the lease was lost."""
        if self._lost is None:
            newer = self.store.stat(layout.lease_key(self.name, self.state.generation + 1))
            if newer is not None:
                self._lost = "another runner took the lease over after it expired"
            elif self.clock() >= self.state.expires_at:
                self._lost = f"it expired at {_stamp(self.state.expires_at)} before a renewal"
        if self._lost is not None:
            self.check()
        self.state.expires_at = self.clock() + self.seconds
        self.store.write(self.key, self.state.encode())

    def check(self) -> None:
        """Raise LeaseLost if the lease is no longer this process's."""
        if self._lost is None and self.clock() >= self.state.expires_at:
            self._lost = f"it expired at {_stamp(self.state.expires_at)} (renewals failed)"
        if self._lost is not None:
            raise LeaseLost(
                f"lost the {self.name} lease on {self.store.url}: {self._lost}",
                hint="the hours already written are whole; run the command again once "
                "the store answers steadily",
            )

    def start_renewing(self) -> Lease:
        """Renew every third of the lease's duration from a background thread."""

        def loop() -> None:
            while not self._stop.wait(self.seconds / 3):
                try:
                    self.renew()
                except LeaseLost:
                    return
                except StoreError:
                    continue  # tried again a third later; check() reports the expiry

        self._thread = threading.Thread(target=loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._lost is not None:
            return
        self.state.released = True
        self.state.expires_at = self.clock()
        with suppress(StoreError):  # the lease then ends at its expiry
            self.store.write(self.key, self.state.encode())

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _prune(store: Store, name: str, below: int) -> None:
    """Remove the generations older than ``below`` (the newest one is the lease)."""
    for info in store.list(_prefix(name)):
        m = _GENERATION.search(info.key)
        if m and int(m.group(1)) < below:
            store.delete(info.key)


def _try_acquire(
    store: Store, name: str, purpose: str, node: str, seconds: float, clock: Callable[[], float]
) -> Lease | LeaseState:
    """The lease, or the live generation that holds it."""
    for _ in range(3):
        now = clock()
        old = current(store, name)
        if old is not None and old.live(now):
            return old
        generation = (old.generation if old else 0) + 1
        state = LeaseState(
            generation, socket.gethostname(), os.getpid(), node, purpose, now, now + seconds
        )
        if store.create(layout.lease_key(name, generation), state.encode()):
            took_over = old if old is not None and not old.released else None
            _prune(store, name, generation)
            return Lease(store, name, state, seconds, took_over, clock)
    raise StoreError(f"{store.url}: the {name} lease changes too fast to be taken")


def acquire(
    store: Store,
    *,
    purpose: str,
    node: str,
    seconds: float,
    name: str = ROLLUP_LEASE,
    wait: float = 0.0,
    clock: Callable[[], float] = time.time,
) -> Lease:
    """Take lease ``name`` (waiting up to ``wait`` seconds for its holder to release it or
    die); LockHeld saying who holds it and until when if it stays taken."""
    deadline = time.monotonic() + wait
    while True:
        got = _try_acquire(store, name, purpose, node, seconds, clock)
        if isinstance(got, Lease):
            return got.start_renewing()
        if time.monotonic() >= deadline:
            raise LockHeld(
                f"the {name} lease on {store.url} is held by {got.holder()} "
                f"until {_stamp(got.expires_at)}",
                hint="wait for that run to finish; a lease whose holder died is taken over "
                "once it expires",
                holder=got.holder(),
            )
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
