"""The format registry: detection order, load_any/dump and their one-line errors."""

import gzip

import pytest
import zstandard

from profviz import formats
from profviz.formats import FormatError, detect_format, dump, load_any
from tests.formats_support import SAMPLE_FILES, assert_format_error, data, function_totals, rich_profile, sample_rows, unpacked


@pytest.mark.parametrize("name, expected", sorted(SAMPLE_FILES.items()))
def test_every_sample_file_is_detected_as_its_format(name, expected):
    assert detect_format(data(name), name).name == expected


def test_exactly_one_format_claims_each_file():
    for name in SAMPLE_FILES:
        raw = unpacked(name)
        claims = [f.name for f in formats.FORMATS if f.detect(raw)]
        assert len(claims) == 1, (name, claims)


@pytest.mark.parametrize("format_name", formats.names(dumpable=True))
def test_dump_then_load_any_detects_and_round_trips(format_name):
    profile = rich_profile()
    out = dump(profile, format_name)
    assert detect_format(out).name == format_name
    again = load_any(out, f"x.{format_name}")
    assert function_totals(again) == function_totals(profile)


def test_gzip_input_is_read_transparently():
    raw = data("pyspy_idle_threads.speedscope.json")
    assert sample_rows(load_any(gzip.compress(raw), "p.json.gz")) == sample_rows(load_any(raw, "p.json"))


def test_zstd_input_is_read_transparently_and_bounded(monkeypatch):
    raw = data("pyspy_idle_threads.speedscope.json")
    packed = zstandard.ZstdCompressor().compress(raw)
    assert sample_rows(load_any(packed, "p.json.zst")) == sample_rows(load_any(raw, "p.json"))
    assert sample_rows(load_any(packed + zstandard.ZstdCompressor().compress(b""), "p.json.zst")) == sample_rows(
        load_any(raw, "p.json"))  # a second, empty frame
    assert_format_error(packed[:-3], "the zstd data is truncated")
    assert_format_error(packed + b"\x00garbage", "starts like zstd but does not unpack")
    monkeypatch.setattr(formats, "MAX_DECOMPRESSED_BYTES", len(raw) - 1)
    assert_format_error(packed, "the zstd data unpacks to more than")


def test_unknown_input_says_what_would_work():
    message = assert_format_error(b"MZ\x90\x00 this is not a profile", "not a profviz, speedscope", "first bytes", "--format speedscope or raw")
    assert "MZ" in message


@pytest.mark.parametrize("blob, fragment", [
    (b"", "the file is empty"),
    (b"  \n\n", "the file is empty"),
    (b'{"hello": "world"}', "not a profviz"),
    (b"[1, 2, 3]", "not a profviz"),
    (b"\x1f\x8b\x08\x00garbage", "gzip"),
])
def test_empty_and_odd_inputs(blob, fragment):
    assert_format_error(blob, fragment)


def test_forced_format_on_the_wrong_file_is_a_clean_error():
    assert_format_error(data("pyspy_raw.txt"), "as speedscope", "invalid JSON", format_name="speedscope")
    assert_format_error(data("pyspy.speedscope.json"), "as collapsed", format_name="collapsed")


def test_unknown_format_names():
    with pytest.raises(FormatError, match="unknown format 'svg'"):
        dump(rich_profile(), "svg")
    with pytest.raises(FormatError, match="cannot write chrometrace"):
        dump(rich_profile(), "chrometrace")
    assert {"speedscope", "collapsed", "profviz", "pyinstrument"} <= set(formats.names(dumpable=True))
