from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p3log.protocol.dialect import ONE_MIB, Dialect, FramingName, TcpRules
from p3log.protocol.framing import (
    FrameDecoder,
    FrameTooLarge,
    FramingError,
    TruncatedFrame,
    encode_frame,
)

FRAMINGS: list[FramingName] = ["u32be", "u32le", "u16be", "u16le", "newline"]
LENGTH_PREFIXED: list[FramingName] = ["u32be", "u32le", "u16be", "u16le"]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def decode_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[bytes]:
    frames: list[bytes] = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        frames.extend(decoder.frames())
    decoder.close()
    return frames


@given(
    framing=st.sampled_from(FRAMINGS),
    payloads=st.lists(st.binary(max_size=300)),
    cuts=st.lists(st.integers(min_value=0)),
)
def test_any_split_of_encoded_frames_decodes_to_the_same_payloads(
    framing: FramingName, payloads: list[bytes], cuts: list[int]
) -> None:
    if framing == "newline":
        payloads = [p.replace(b"\n", b"") for p in payloads]
    stream = b"".join(encode_frame(p, framing) for p in payloads)

    assert decode_all(FrameDecoder(framing), split_at(stream, cuts)) == payloads


@pytest.mark.parametrize("framing", FRAMINGS)
def test_several_frames_in_one_read(framing: FramingName) -> None:
    payloads = [b'{"type":"A"}', b"", b'{"type":"B"}']
    decoder = FrameDecoder(framing)
    decoder.receive_data(b"".join(encode_frame(p, framing) for p in payloads))

    assert list(decoder.frames()) == payloads
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("framing", "wire"),
    [
        ("u32be", b"\x00\x00\x00\x03abc"),
        ("u32le", b"\x03\x00\x00\x00abc"),
        ("u16be", b"\x00\x03abc"),
        ("u16le", b"\x03\x00abc"),
        ("newline", b"abc\n"),
    ],
)
def test_wire_layout(framing: FramingName, wire: bytes) -> None:
    assert encode_frame(b"abc", framing) == wire


@pytest.mark.parametrize("framing", LENGTH_PREFIXED)
def test_partial_header_waits_for_more_data(framing: FramingName) -> None:
    wire = encode_frame(b"hello", framing)
    decoder = FrameDecoder(framing)

    decoder.receive_data(wire[:1])
    assert decoder.next_frame() is None
    decoder.receive_data(wire[1:])
    assert decoder.next_frame() == b"hello"
    assert decoder.next_frame() is None


@pytest.mark.parametrize("framing", FRAMINGS)
def test_zero_length_frame(framing: FramingName) -> None:
    decoder = FrameDecoder(framing)
    decoder.receive_data(encode_frame(b"", framing))

    assert decoder.next_frame() == b""
    assert decoder.next_frame() is None


def test_newline_framing_keeps_carriage_return_in_payload() -> None:
    decoder = FrameDecoder("newline")
    decoder.receive_data(b'{"a":1}\r\n')

    assert decoder.next_frame() == b'{"a":1}\r'


@pytest.mark.parametrize("framing", LENGTH_PREFIXED)
def test_oversize_header_raises_before_the_body_arrives_and_frees_the_buffer(
    framing: FramingName,
) -> None:
    header = encode_frame(b"x" * 2000, framing)[:-2000]
    decoder = FrameDecoder(framing, max_frame_bytes=1000)
    decoder.receive_data(header + b"x" * 10)

    with pytest.raises(FrameTooLarge) as caught:
        decoder.next_frame()

    assert (caught.value.size, caught.value.limit) == (2000, 1000)
    assert str(caught.value) == "frame of 2000 bytes exceeds the 1000-byte limit"
    assert decoder.buffered == 0


def test_default_limit_is_one_mib() -> None:
    decoder = FrameDecoder()
    decoder.receive_data((2_000_000).to_bytes(4, "big"))

    with pytest.raises(FrameTooLarge, match=r"^frame of 2000000 bytes exceeds the 1048576-byte"):
        decoder.next_frame()


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    decoder = FrameDecoder("u32be", max_frame_bytes=8)
    decoder.receive_data(encode_frame(b"12345678", "u32be", max_frame_bytes=8))

    assert decoder.next_frame() == b"12345678"


def test_newline_oversize_raises_once_limit_is_passed_without_newline() -> None:
    decoder = FrameDecoder("newline", max_frame_bytes=10)
    decoder.receive_data(b"0123456789")
    assert decoder.next_frame() is None

    decoder.receive_data(b"A")
    with pytest.raises(FrameTooLarge, match=r"^frame of at least 11 bytes exceeds the 10-byte"):
        decoder.next_frame()


def test_newline_oversize_line_that_arrived_whole() -> None:
    decoder = FrameDecoder("newline", max_frame_bytes=10)
    decoder.receive_data(b"ok\n" + b"x" * 11 + b"\n")

    assert decoder.next_frame() == b"ok"
    with pytest.raises(FrameTooLarge) as caught:
        decoder.next_frame()
    assert caught.value.size == 11


def test_decoder_is_unusable_after_an_error() -> None:
    decoder = FrameDecoder("u16be", max_frame_bytes=4)
    decoder.receive_data(b"\x00\x05hello")
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()

    with pytest.raises(FramingError, match="unusable after an earlier error"):
        decoder.receive_data(b"\x00\x01a")
    with pytest.raises(FramingError, match="unusable"):
        decoder.next_frame()


def test_u16_limits() -> None:
    big = b"x" * 65535
    assert encode_frame(big, "u16be", max_frame_bytes=ONE_MIB)[:2] == b"\xff\xff"
    with pytest.raises(FrameTooLarge, match=r"^frame of 65536 bytes exceeds the 65535-byte"):
        encode_frame(big + b"x", "u16le", max_frame_bytes=ONE_MIB)

    decoder = FrameDecoder("u16le", max_frame_bytes=ONE_MIB)
    decoder.receive_data(encode_frame(big, "u16le"))
    assert decoder.next_frame() == big


def test_encode_rejects_oversize_and_embedded_newline() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * 11, "u32be", max_frame_bytes=10)
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * 11, "newline", max_frame_bytes=10)
    with pytest.raises(FramingError, match="newline"):
        encode_frame(b'{\n"a": 1}', "newline")


@pytest.mark.parametrize(
    ("framing", "wire", "message"),
    [
        ("u32be", b"\x00\x00", "inside a frame header (2 of 4 bytes)"),
        ("u16le", b"\x05\x00abc", "inside a frame (3 of 5 bytes)"),
        ("newline", b'{"a":1}\n{"b"', "4 bytes after the last newline"),
    ],
)
def test_truncated_stream_is_detected_at_close(
    framing: FramingName, wire: bytes, message: str
) -> None:
    decoder = FrameDecoder(framing)
    decoder.receive_data(wire)
    list(decoder.frames())

    with pytest.raises(TruncatedFrame, match=re.escape(message)):
        decoder.close()


def test_close_on_a_clean_boundary_is_silent() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_frame(b"abc"))
    assert decoder.next_frame() == b"abc"

    decoder.close()


def test_unknown_framing_and_bad_limit_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown framing"):
        FrameDecoder("u24be")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        FrameDecoder(max_frame_bytes=0)


def test_for_dialect_uses_its_tcp_rules() -> None:
    decoder = FrameDecoder.for_dialect(Dialect(tcp=TcpRules("u16le", max_frame_bytes=3)))
    decoder.receive_data(b"\x04\x00")

    with pytest.raises(FrameTooLarge, match="exceeds the 3-byte limit"):
        decoder.next_frame()


def test_many_small_frames_in_one_read() -> None:
    decoder = FrameDecoder("u16be")
    decoder.receive_data(encode_frame(b"{}", "u16be") * 200_000)

    assert sum(1 for _ in decoder.frames()) == 200_000


def test_long_line_fed_in_small_reads() -> None:
    decoder = FrameDecoder("newline")
    for _ in range(20_000):
        decoder.receive_data(b"x" * 50)
        assert decoder.next_frame() is None
    decoder.receive_data(b"\n")

    assert decoder.next_frame() == b"x" * 1_000_000
