"""verify's proof cuts journal files into byte ranges of whole lines, shared out over
worker processes: the cuts must cover each file exactly, and only at line ends."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from p3log.store.intact import line_ranges


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"") + b"\n")),
    torn=st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")),
    pieces=st.integers(1, 12),
)
def test_the_ranges_cover_the_file_in_whole_lines(
    tmp_path_factory: object, lines: list[bytes], torn: bytes, pieces: int
) -> None:
    data = b"".join(lines) + torn
    path = Path(str(tmp_path_factory.mktemp("ranges"))) / "journal.jsonl"
    path.write_bytes(data)
    ranges = line_ranges(path, pieces)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(end == start for (_, end), (start, _) in itertools.pairwise(ranges))
    assert len(ranges) <= pieces
    for start, end in ranges[1:]:
        assert data[start - 1 : start] == b"\n"  # each cut just past a newline
        assert start < end
    # Whole lines: splitting each range gives the file's lines, none cut in two.
    assert [line for start, end in ranges for line in data[start:end].splitlines(True)] == (
        data.splitlines(True)
    )
