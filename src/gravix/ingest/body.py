"""Reading a request body: the running size check while it arrives (413 as soon as it
passes the declared length or the limit), its deadline (408), and gunzip of every member
with the same limit on the whole decompressed size."""

from __future__ import annotations

import zlib

from gravix.ingest.routes import HttpError, Receive

# A request body must arrive whole within this many seconds of its first part; the HTTP
# protocol (gravix.ingest.protocol) ends a body that does not, and read_body answers 408.
BODY_TIMEOUT_SECONDS = 10.0


async def read_body(receive: Receive, length: int, limit: int) -> bytes:
    """The whole body; never holds more than ``min(length, limit)`` bytes of it. A body that
    ends short of ``length`` was ended by the protocol's deadline."""
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")  # the whole body at once: the usual case
        if len(body) != length:
            _wrong_length(len(body), length, limit)
        return body
    chunks: list[bytes] = []
    total = 0
    while True:
        if message["type"] == "http.disconnect":
            raise HttpError(400, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit or total > length:
                raise HttpError(413, f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    if total != length:
        _wrong_length(total, length, limit)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _wrong_length(got: int, length: int, limit: int) -> None:
    if got > length or got > limit:
        raise HttpError(413, f"body is over the limit of {limit} bytes")
    raise HttpError(
        408, f"the body did not arrive within {BODY_TIMEOUT_SECONDS:g} s ({got} of {length} bytes)"
    )


# Compressed input is fed in slices of this size: zlib copies what follows a member's end,
# so a body of many tiny members fed whole would cost time quadratic in its size.
_GZIP_SLICE = 64 * 1024


def gunzip(body: bytes, limit: int) -> bytes:
    """The decoded body: every gzip member, one after another (RFC 1952: a gzip file is a
    series of members); anything after the last member that is not one is a 400. Never
    inflates more than ``limit`` + 1 bytes in all."""
    out: list[bytes] = []
    room = limit + 1
    view = memoryview(body)
    pos = members = 0
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    while True:
        piece = view[pos : pos + _GZIP_SLICE]
        try:
            part = inflater.decompress(piece, room)
        except zlib.error as exc:
            where = "bytes after the last gzip member" if members else "body is not valid gzip"
            raise HttpError(400, f"{where}: {exc}") from None
        room -= len(part)
        if room <= 0 or inflater.unconsumed_tail:
            raise HttpError(413, f"decompressed body is over the limit of {limit} bytes")
        if part:
            out.append(part)
        if inflater.eof:
            members += 1
            pos += len(piece) - len(inflater.unused_data)
            if pos == len(body):
                return out[0] if len(out) == 1 else b"".join(out)
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        else:
            pos += len(piece)
            if pos >= len(body):
                if members:
                    raise HttpError(400, "bytes after the last gzip member are not a gzip member")
                raise HttpError(400, "gzip body is truncated")
