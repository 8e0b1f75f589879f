"""Single-event requests that arrive together, validated and appended as one group."""

from __future__ import annotations

import asyncio
import logging

from gravix.errors import StorageError, ValidationError
from gravix.ingest.buffer import TopicBuffer, fresh_error
from gravix.schema import Validator

log = logging.getLogger(__name__)


# Turns of the event loop a group of single events may wait for more requests, while each
# turn brings more: every fdatasync blocks the process, so the fewer per request the better.
# Four turns measured best with 16 connections per worker (10-13 requests per commit instead
# of 5 when committing at once); a turn that brings nothing ends the wait.
GATHER_TURNS = 4


class SingleEvents:
    """The single-event requests of one topic that arrive in the same few turns of the event
    loop are validated together (one pass over many events costs far less than one per
    request) and appended as one group, written and fsynced at once when the buffer's
    writer is idle; each request is then answered with its own outcome."""

    def __init__(self, validator: Validator, buffer: TopicBuffer) -> None:
        self.validator = validator
        self.buffer = buffer
        self._waiting: list[tuple[bytes, asyncio.Future[str]]] = []
        # Looked up once: asyncio.get_running_loop() costs a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seen = 0
        self._turns = 0

    def submit(self, body: bytes) -> asyncio.Future[str]:
        """A future for the event's id once it is fsynced; it fails with
        :class:`ValidationError` for an invalid body, or with the storage error."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        future: asyncio.Future[str] = loop.create_future()
        self._waiting.append((body, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        if len(self._waiting) > self._seen and self._turns < GATHER_TURNS:
            # Still growing: give the loop another turn (a poll that does not wait) to read
            # requests that have just arrived, so that they share this fdatasync.
            self._seen = len(self._waiting)
            self._turns += 1
            assert self._loop is not None
            self._loop.call_soon(self._flush)
            return
        self._seen = self._turns = 0
        waiting, self._waiting = self._waiting, []
        try:
            lines = self.validator.many([body for body, _ in waiting])
        except Exception as exc:  # a bug, not bad input: fail these requests, never hang them
            log.exception("validating %d single events failed", len(waiting))
            for _body, future in waiting:
                if not future.done():
                    future.set_exception(RuntimeError(f"validation failed: {exc!r}"))
            return
        rejected = dict(lines.errors)
        accepted: list[asyncio.Future[str]] = []
        for index, (_body, future) in enumerate(waiting):
            message = rejected.get(index)
            if message is None:
                accepted.append(future)
            elif not future.done():
                future.set_exception(ValidationError(message))
        if not accepted:
            return
        try:
            if self.buffer.write_now(lines.data, lines.events, lines.hours, requests=len(accepted)):
                _settle(accepted, lines.ids, None)
                return
            stored = self.buffer.submit(
                lines.data, lines.events, lines.hours, requests=len(accepted)
            )
        except StorageError as exc:  # DurabilityLost included
            _settle(accepted, lines.ids, exc)
            return

        def answer(done: asyncio.Future[None]) -> None:
            error = (
                StorageError("the commit was cancelled") if done.cancelled() else done.exception()
            )
            _settle(accepted, lines.ids, error)

        stored.add_done_callback(answer)


def _settle(
    futures: list[asyncio.Future[str]], event_ids: list[str], error: BaseException | None
) -> None:
    """Answer each still-waiting request of a group: its event id, or its own copy of the
    group's storage error."""
    for future, event_id in zip(futures, event_ids, strict=True):
        if future.done():
            continue
        if error is None:
            future.set_result(event_id)
        else:
            future.set_exception(fresh_error(error))
