"""One home for WebSocket close codes: what may be sent, the one fallback, and a reason
clipped to the 123 bytes a close frame has room for, whatever the text."""

from __future__ import annotations

import trio
from hypothesis import example, given
from hypothesis import strategies as st

from p3log.net.channel import Channel, ChannelClosed, open_channel, serve_channels
from p3log.net.close_codes import (
    INTERNAL_ERROR,
    MAX_REASON_BYTES,
    clip,
    passed_on,
    sendable,
)


@given(st.text())
@example("é" * 200)
@example("€" * 41 + "x")  # 123 bytes when cut at 120 naively would end mid-character
@example("\ud800" * 10)  # a lone surrogate (text decoded with surrogateescape)
def test_a_clipped_reason_fits_a_close_frame_and_is_valid_utf8(reason: str) -> None:
    clipped = clip(reason)
    data = clipped.encode("utf-8")  # raises on anything that is not sendable text
    assert len(data) <= MAX_REASON_BYTES


@given(st.text())
def test_a_reason_that_fits_is_kept_and_a_cut_one_is_a_prefix(reason: str) -> None:
    clipped = clip(reason)
    try:
        fits = len(reason.encode("utf-8")) <= MAX_REASON_BYTES
    except UnicodeEncodeError:
        return  # not text a frame can carry: only the first property applies
    if fits:
        assert clipped == reason
    else:
        assert clipped.endswith("...") and reason.startswith(clipped[:-3])
        # cut at the last whole character that leaves room for the marker
        assert len(clipped[:-3].encode()) > MAX_REASON_BYTES - 3 - 4


@given(st.integers(min_value=-(2**16), max_value=2**16) | st.none())
def test_passed_on_is_the_code_when_sendable_else_the_one_fallback(code: int | None) -> None:
    expected = code if code is not None and sendable(code) else INTERNAL_ERROR
    assert passed_on(code) == expected
    assert sendable(passed_on(code))


def test_the_codes_that_only_describe_what_happened_locally_are_not_sent() -> None:
    assert [sendable(code) for code in (1004, 1005, 1006, 1015, 999, 2999, 5000)] == [False] * 7
    assert all(sendable(code) for code in (1000, 1001, 1008, 1009, 1011, 1013, 3000, 4999))


async def test_a_websocket_close_with_a_long_non_ascii_reason_arrives_clipped() -> None:
    """A real link on 127.0.0.1: the reason p3log closes with is clipped at the door."""
    reason = "Zahlung abgelehnt: ungültige Übertragung — " * 10

    async def close_at_once(channel: Channel) -> None:
        await channel.aclose(1006, reason)  # unsendable: goes out as the fallback

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_channels, close_at_once, "127.0.0.1", 0, "ws")
        async with open_channel(f"ws://127.0.0.1:{port}/") as channel:
            with trio.fail_after(10):
                try:
                    await channel.receive()
                except ChannelClosed as closed:
                    received = closed
        nursery.cancel_scope.cancel()
    assert received.code == INTERNAL_ERROR
    assert received.reason == clip(reason)
    assert len(received.reason.encode()) <= MAX_REASON_BYTES
