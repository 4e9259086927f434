"""The record of what was written (sizes, checksums) and its check on open,
for every kind of artefact; the index's own damage cases are in test_index."""

import hashlib
import io
import json

import pytest

import retrieval.store.artefacts as artefacts
from retrieval.errors import DamagedArtefact
from retrieval.store.artefacts import check, problems, record, sha256_file
from retrieval.store.cache import read_meta


@pytest.fixture
def entry(tmp_path):
    """A folder of two files and their record."""
    (tmp_path / "a.npy").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "b.json").write_text('{"x": 1}')
    return tmp_path, record(tmp_path, ["a.npy", "b.json"])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_sha256_streams_in_chunks(tmp_path, monkeypatch):
    """Indexes can be larger than memory: a file is never read whole."""
    data = bytes(range(256)) * 1000
    (tmp_path / "f").write_bytes(data)
    reads = []

    class CountedReads(io.FileIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    monkeypatch.setattr(artefacts, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(artefacts, "open", lambda path, mode: CountedReads(path), raising=False)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert len(reads) == 257 and set(reads) == {1000}


def test_record_holds_sizes_and_checksums_and_an_intact_entry_passes(entry):
    folder, files = entry
    assert files["b.json"] == {"bytes": 8, "sha256": hashlib.sha256(b'{"x": 1}').hexdigest()}
    check(folder, files)
    check(folder, files, deep=True)
    assert problems(folder, files, deep=True) == []


def test_a_missing_file_is_named(entry):
    folder, files = entry
    (folder / "a.npy").unlink()
    with pytest.raises(DamagedArtefact, match=r"a\.npy: missing$"):
        check(folder, files)


def test_size_is_checked_even_when_checksums_are_not(entry):
    folder, files = entry
    (folder / "a.npy").write_bytes((folder / "a.npy").read_bytes()[:100])
    with pytest.raises(DamagedArtefact, match=r"a\.npy: damaged \(size 100 bytes, written as 10240"):
        check(folder, files, deep=False)


def test_checksum_is_checked_on_open_only_below_the_threshold(entry, monkeypatch):
    folder, files = entry
    flip_a_byte(folder / "a.npy")
    with pytest.raises(DamagedArtefact, match=r"a\.npy: damaged \(its checksum differs"):
        check(folder, files)
    monkeypatch.setattr(artefacts, "HASH_ON_OPEN_BYTES", 10239)  # a.npy is now "large"
    check(folder, files)  # only its size, which is right
    with pytest.raises(DamagedArtefact, match="checksum differs"):
        check(folder, files, deep=True)


def test_problems_lists_every_damaged_file_one_line_each(entry):
    """For `python -m retrieval verify`: all that is wrong, not just the first."""
    folder, files = entry
    flip_a_byte(folder / "a.npy")
    (folder / "b.json").unlink()
    found = problems(folder, files, deep=True)
    assert len(found) == 2 and "a.npy: damaged" in found[0] and "b.json: missing" in found[1]


@pytest.mark.parametrize("files", [None, {}, "a.npy"])
def test_no_record_is_damage_not_a_pass(entry, files):
    """An entry written before files were recorded is checked as damaged (rebuilt), not trusted."""
    with pytest.raises(DamagedArtefact, match="no record of its files"):
        check(entry[0], files)


def test_a_record_that_leaves_out_a_required_file_is_damage(entry):
    folder, files = entry
    with pytest.raises(DamagedArtefact, match=r"c\.bin: not in the record"):
        check(folder, files, required=("a.npy", "c.bin"))


@pytest.mark.parametrize("name, entry_record", [
    ("../outside", None),
    ("/etc/passwd", None),
    ("a.npy", {"bytes": "10240", "sha256": "0"}),
    ("a.npy", {"bytes": 10240}),
    ("a.npy", [10240]),
])
def test_a_damaged_record_is_damage_not_a_crash_nor_a_read_elsewhere(entry, name, entry_record):
    folder, files = entry
    files = {name: entry_record or files["a.npy"]}
    with pytest.raises(DamagedArtefact, match=f"damaged record of its files \\(entry {name!r}"):
        check(folder, files)


def test_read_meta_is_none_only_when_there_is_no_entry(tmp_path):
    assert read_meta(tmp_path) is None
    (tmp_path / "meta.json").write_text(json.dumps({"n": 1}))
    assert read_meta(tmp_path) == {"n": 1}


@pytest.mark.parametrize("content, why", [
    (b'{"n": 1', "JSONDecodeError"),
    (b'{"a": "\xc3\x28"}', "UnicodeDecodeError"),
    (b"[" * 100_000, "RecursionError"),
    (b"[1, 2]", "not a JSON object"),
], ids=["truncated", "not UTF-8", "nested too deep", "a list"])
def test_read_meta_refuses_a_damaged_entry_instead_of_calling_it_absent(tmp_path, content, why):
    (tmp_path / "meta.json").write_bytes(content)
    with pytest.raises(DamagedArtefact, match=f"meta.json: damaged \\({why}") as refused:
        read_meta(tmp_path)
    assert "\n" not in str(refused.value)
