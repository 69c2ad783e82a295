"""layer_fetch's pure helpers: merging byte ranges, the ranges still to fetch, and where a GGUF's
header ends in its first bytes."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter
from hypothesis import given
from hypothesis import strategies as st

from services.runner.hub_files import DownloadError
from services.runner.layer_fetch import GAP_BYTES, coalesce, header_length, missing

GAP = GAP_BYTES


@pytest.mark.parametrize(
    ("ranges", "gap", "merged"),
    [
        ([], 0, ()),
        ([(5, 10), (0, 3)], 0, ((0, 3), (5, 10))),  # sorted
        ([(0, 5), (3, 8)], 0, ((0, 8),)),  # overlapping
        ([(0, 5), (5, 8)], 0, ((0, 8),)),  # touching
        ([(0, 10), (2, 3)], 0, ((0, 10),)),  # one inside another
        ([(0, 5), (8, 10)], 3, ((0, 10),)),  # 3 bytes apart, gap 3: one range, the gap included
        ([(0, 5), (8, 10)], 2, ((0, 5), (8, 10))),
        ([(3, 3), (5, 6)], 0, ((5, 6),)),  # an empty range is dropped
        ([(0, 4), (2, 6), (20, 30), (25, 26)], 0, ((0, 6), (20, 30))),
    ],
)
def test_coalesce_sorts_and_merges_ranges_up_to_the_gap(ranges, gap, merged) -> None:
    assert coalesce(ranges, gap) == merged


@pytest.mark.parametrize(
    ("wanted", "present", "holes"),
    [
        ([(0, 100)], (), ((0, 100),)),
        ([(0, 100)], ((0, 100),), ()),  # all there: nothing fetched again
        ([(0, 100)], ((0, 500),), ()),
        ([(0, 100)], ((20, 30),), ((0, 20), (30, 100))),
        ([(0, 100)], ((0, 50),), ((50, 100),)),
        ([(0, 100)], ((50, 200),), ((0, 50),)),
        ([(20, 30)], ((0, 10), (200, 300)), ((20, 30),)),  # present ranges on both sides
        ([(0, 1000)], ((100, 200), (300, 400)), ((0, 100), (200, 300), (400, 1000))),
        # Tensors a few bytes apart: one request, the padding between them included.
        ([(0, 10), (GAP + 10, GAP + 20)], (), ((0, GAP + 20),)),
        ([(GAP + 11, GAP + 20), (0, 10)], (), ((0, 10), (GAP + 11, GAP + 20))),  # farther apart, any order: two
        ([(0, 10), (GAP + 10, GAP + 20)], ((5, GAP + 15),), ((0, 5), (GAP + 15, GAP + 20))),
    ],
)
def test_missing_is_what_is_wanted_less_what_is_present(wanted, present, holes) -> None:
    assert missing(wanted, present) == holes


ranges = st.lists(st.tuples(st.integers(0, 4 * GAP), st.integers(0, 2 * GAP)).map(lambda pair: (pair[0], pair[0] + pair[1])), max_size=6)


@given(wanted=ranges, present=ranges)
def test_missing_covers_every_wanted_byte_and_no_present_one(wanted, present) -> None:
    held = coalesce(present)
    holes = missing(wanted, held)
    assert holes == coalesce(holes)  # sorted, apart, none empty
    assert all(stop <= start or hole_stop <= start or stop <= hole_start for start, stop in held for hole_start, hole_stop in holes)
    covered = coalesce((*holes, *held))
    assert all(any(start <= want_start and want_stop <= stop for start, stop in covered) for want_start, want_stop in wanted if want_stop > want_start)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, int]:
    """A GGUF with values of every kind its header holds (scalars, a string, arrays of numbers and
    of strings) and three tensors; its bytes and where its tensor table ends, as gguf's reader says."""
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    writer = GGUFWriter(path, "llama")
    writer.add_block_count(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_bool("tiny.flag", True)
    writer.add_string("tiny.name", "a name with ünïcode")
    writer.add_array("tiny.numbers", [1, 2, 3, 4])
    writer.add_array("tiny.words", ["one", "two", "three"])
    for name, shape in (("token_embd.weight", (8, 4)), ("blk.0.attn_norm.weight", (4,)), ("blk.1.attn_norm.weight", (4,))):
        writer.add_tensor(name, np.ones(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    last = GGUFReader(path).tensors[-1].field
    return path.read_bytes(), last.offset + sum(part.nbytes for part in last.parts)


def test_header_length_is_where_the_tensor_table_ends(tiny_gguf: tuple[bytes, int]) -> None:
    data, end = tiny_gguf
    assert header_length(data) == end
    assert header_length(data[:end]) == end  # the header alone is enough
    assert end < len(data)  # the file goes on: padding, then tensor data


def test_header_length_of_any_truncated_header_is_none(tiny_gguf: tuple[bytes, int]) -> None:
    data, end = tiny_gguf
    assert [cut for cut in range(end) if header_length(data[:cut]) is not None] == []


def test_an_unknown_value_type_is_refused(tiny_gguf: tuple[bytes, int]) -> None:
    data, _ = tiny_gguf
    first_type = 24 + 8 + len(b"general.architecture")  # the first key's value type follows its name
    assert data[first_type : first_type + 4] == (8).to_bytes(4, "little")  # a string
    with pytest.raises(DownloadError, match="unknown value type 99"):
        header_length(data[:first_type] + (99).to_bytes(4, "little") + data[first_type + 4 :])
