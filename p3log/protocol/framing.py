"""Sans-IO codec for P3 over framed TCP: bytes in, frames out.

The header layout is a [gap] in docs/protocol.md, so the framing is picked by name from the
dialect, never hard-wired:

- ``u32be`` / ``u32le`` / ``u16be`` / ``u16le``: an unsigned length N in 4 or 2 bytes, big or
  little endian, then N payload bytes;
- ``newline``: the payload, then ``b"\\n"``. This only works for single-line JSON (raw
  newlines are legal whitespace in JSON, so pretty-printed messages cannot use it). A ``\\r``
  before the newline is kept in the payload: it is JSON whitespace, so the message still
  parses, and the recorded bytes stay exactly the bytes that arrived.

Like h11 and wsproto, `FrameDecoder` owns no socket and no clock. The caller loops::

    decoder.receive_data(chunk)
    for frame in decoder.frames():
        ...
    # when the peer closes the stream:
    decoder.close()

A frame over ``max_frame_bytes`` raises `FrameTooLarge` as soon as its header (or, for
newline framing, its unterminated first ``max_frame_bytes + 1`` bytes) is buffered, so one
bad peer cannot make the decoder hold more than one frame plus one read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

from p3log.protocol.dialect import ONE_MIB, Dialect, FramingName

_HEADERS: Final[dict[FramingName, struct.Struct]] = {
    "u32be": struct.Struct(">I"),
    "u32le": struct.Struct("<I"),
    "u16be": struct.Struct(">H"),
    "u16le": struct.Struct("<H"),
}
_NEWLINE: Final = b"\n"


class FramingError(ValueError):
    """Bytes on a framed TCP stream that cannot be split into frames."""


class FrameTooLarge(FramingError):
    """A frame longer than the configured maximum."""

    def __init__(self, size: int, limit: int, *, at_least: bool = False) -> None:
        self.size = size
        self.limit = limit
        bound = "at least " if at_least else ""
        super().__init__(f"frame of {bound}{size} bytes exceeds the {limit}-byte limit")


class TruncatedFrame(FramingError):
    """The stream ended inside a frame."""


def encode_frame(
    payload: bytes, framing: FramingName = "u32be", max_frame_bytes: int = ONE_MIB
) -> bytes:
    """Frame one payload for sending; raise `FramingError` if it cannot be framed."""
    header = _header_for(framing)
    limit = max_frame_bytes if header is None else min(max_frame_bytes, _max_length(header))
    if len(payload) > limit:
        raise FrameTooLarge(len(payload), limit)
    if header is None:
        if _NEWLINE in payload:
            raise FramingError("newline framing cannot carry a payload that contains b'\\n'")
        return payload + _NEWLINE
    return header.pack(len(payload)) + payload


class FrameDecoder:
    """Split a byte stream into frames; see the module docstring for the calling loop.

    After any `FramingError` the stream position is lost, so the decoder is unusable: every
    later call raises `FramingError` again. Drop the connection.
    """

    def __init__(self, framing: FramingName = "u32be", max_frame_bytes: int = ONE_MIB) -> None:
        if max_frame_bytes < 1:
            raise ValueError(f"max_frame_bytes must be at least 1, got {max_frame_bytes}")
        self._header = _header_for(framing)
        self._limit = max_frame_bytes
        # Consumed frames only advance `_start`; the bytes before it are dropped once per
        # `receive_data`, so many small frames in one read cost O(n), not O(n^2).
        self._buffer = bytearray()
        self._start = 0
        # Newline framing: where to resume looking for b"\n", so that a long line fed in
        # small reads is scanned once, not once per read.
        self._scanned = 0
        self._failure: FramingError | None = None

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> FrameDecoder:
        return cls(dialect.tcp.framing, dialect.tcp.max_frame_bytes)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buffer) - self._start

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the stream."""
        self._check_usable()
        if self._start:
            del self._buffer[: self._start]
            self._scanned -= self._start
            self._start = 0
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """Return the next complete frame's payload, or None if more data is needed."""
        span = self._checked_span()
        if span is None:
            return None
        begin, end, next_start = span
        frame = bytes(self._buffer[begin:end])
        self._start = self._scanned = next_start
        return frame

    def frames(self) -> Iterator[bytes]:
        """Yield every complete frame buffered so far."""
        while (frame := self.next_frame()) is not None:
            yield frame

    def close(self) -> None:
        """Report the end of the stream; raise `TruncatedFrame` if it cut a frame short.

        Call it once `next_frame()` has returned None.
        """
        if self._checked_span() is not None:
            raise RuntimeError("close() called while complete frames are still buffered")
        if self.buffered:
            exc = TruncatedFrame(self._describe_partial())
            self._fail(exc)
            raise exc

    def _checked_span(self) -> tuple[int, int, int] | None:
        self._check_usable()
        try:
            return self._next_span()
        except FramingError as exc:
            self._fail(exc)
            raise

    def _next_span(self) -> tuple[int, int, int] | None:
        """(payload begin, payload end, start of the following frame) or None."""
        buffer, start = self._buffer, self._start
        if self._header is None:
            newline = buffer.find(_NEWLINE, max(self._scanned, start))
            if newline < 0:
                self._scanned = len(buffer)
                if self.buffered > self._limit:
                    raise FrameTooLarge(self.buffered, self._limit, at_least=True)
                return None
            if newline - start > self._limit:
                raise FrameTooLarge(newline - start, self._limit)
            return start, newline, newline + 1
        header = self._header
        if self.buffered < header.size:
            return None
        (size,) = header.unpack_from(buffer, start)
        if size > self._limit:
            raise FrameTooLarge(size, self._limit)
        begin = start + header.size
        if len(buffer) - begin < size:
            return None
        return begin, begin + size, begin + size

    def _describe_partial(self) -> str:
        if self._header is None:
            return f"stream ended with {self.buffered} bytes after the last newline"
        if self.buffered < self._header.size:
            got, need = self.buffered, self._header.size
            return f"stream ended inside a frame header ({got} of {need} bytes)"
        (size,) = self._header.unpack_from(self._buffer, self._start)
        arrived = self.buffered - self._header.size
        return f"stream ended inside a frame ({arrived} of {size} bytes)"

    def _fail(self, exc: FramingError) -> None:
        self._failure = exc
        self._buffer = bytearray()
        self._start = self._scanned = 0

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise FramingError(f"frame decoder unusable after an earlier error: {self._failure}")


def _header_for(framing: FramingName) -> struct.Struct | None:
    if framing == "newline":
        return None
    try:
        return _HEADERS[framing]
    except KeyError:
        raise ValueError(f"unknown framing {framing!r}") from None


def _max_length(header: struct.Struct) -> int:
    """The largest length the header can announce."""
    return (1 << (8 * header.size)) - 1
