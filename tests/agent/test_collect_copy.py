"""`_collect.copy`: output taken from a session's buffer, small and large, leaves the buffer
free to shrink (no view of it outlives the copy)."""

from __future__ import annotations

import pytest

from rock_agent._collect import COPY_VIEW, copy


@pytest.mark.parametrize("size", [0, 3, COPY_VIEW - 1, COPY_VIEW, 10 * COPY_VIEW])
def test_copy_is_the_slice_and_the_buffer_can_shrink_after(size: int) -> None:
    buffer = bytearray(b"x" * size + b"<end>" + b"y" * 7)
    taken = copy(buffer, 0, size)
    assert type(taken) is bytes
    assert taken == b"x" * size
    del buffer[: size + 5]  # would raise BufferError if a view were still exported
    assert buffer == bytearray(b"y" * 7)


def test_copy_of_a_middle_and_a_tail() -> None:
    buffer = bytearray(bytes(range(256)) * 64)
    assert copy(buffer, 100, 9000) == bytes(buffer[100:9000])
    assert copy(buffer, 5, len(buffer)) == bytes(buffer[5:])
    buffer.clear()
    assert buffer == bytearray()
