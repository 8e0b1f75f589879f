"""Reading a request body: the running size check while it arrives (413 as soon as it
passes the declared length or the limit), and gunzip with the same limit on the
decompressed size."""

from __future__ import annotations

import zlib

from gravix.ingest.routes import HttpError, Receive


async def read_body(receive: Receive, length: int, limit: int) -> bytes:
    """The whole body; never holds more than ``min(length, limit)`` bytes of it."""
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")  # the whole body at once: the usual case
        if len(body) > limit or len(body) > length:
            raise HttpError(413, f"body is over the limit of {limit} bytes")
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
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def gunzip(body: bytes, limit: int) -> bytes:
    """The decoded body; never inflates more than ``limit`` + 1 bytes."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise HttpError(400, f"body is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise HttpError(413, f"decompressed body is over the limit of {limit} bytes")
    if not inflater.eof:
        raise HttpError(400, "gzip body is truncated")
    return out
