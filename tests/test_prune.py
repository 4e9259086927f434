"""`prune`: a catalogue that changes leaves its old index and the chunks of
removed images behind; pruning removes those and keeps everything the current
catalogue uses, so its next run rebuilds nothing."""

import os
import shutil
import time

import pytest

from retrieval.cli.main import main
from retrieval.data.catalogues import load_catalogue
from retrieval.models.backbones import create_backbone
from retrieval.search.thumbnails import Thumbnails

WEEKS_AGO = time.time() - 21 * 86_400


def index(folder, cache) -> int:
    return main(["index", "--catalogue", str(folder), "--backbone", "tiny_test", "--runtime", "torch",
                 "--cache-dir", str(cache)])


def age_everything(cache):
    """As if every cache file and folder was last used three weeks ago."""
    for path in [cache, *cache.rglob("*")]:
        os.utime(path, (WEEKS_AGO, WEEKS_AGO))


def listing(cache) -> set:
    return {str(path.relative_to(cache)) for path in cache.rglob("*")}


def test_prune_removes_what_a_changed_catalogue_left_and_keeps_what_it_uses(class_folders, tmp_path, capsys):
    cache, blue = tmp_path / "cache", class_folders / "blue"
    kept_aside = shutil.move(blue, tmp_path / "blue")
    assert index(class_folders, cache) == 0               # red + green: one chunk, one index
    shutil.move(kept_aside, blue)
    assert index(class_folders, cache) == 0               # + blue: a second chunk; the index grows in place
    age_everything(cache)
    shutil.rmtree(blue)                                   # blue is gone again; today's run marks what it uses
    assert index(class_folders, cache) == 0
    chunks, indexes = sorted(cache.glob("features/*/*.npz")), sorted(cache.glob("indexes/*"))
    assert len(chunks) == 2 and len(indexes) == 1
    capsys.readouterr()

    before = listing(cache)
    assert main(["prune", "--unused-for", "7", "--dry-run", "--cache-dir", str(cache)]) == 0
    assert listing(cache) == before                        # a dry run removes nothing
    said = capsys.readouterr().out
    assert said.count("would remove  ") == 1 and "would remove 1 entries and chunks" in said

    assert main(["prune", "--unused-for", "7", "--cache-dir", str(cache)]) == 0
    kept_chunks, kept_indexes = sorted(cache.glob("features/*/*.npz")), sorted(cache.glob("indexes/*"))
    assert len(kept_chunks) == 1 and kept_indexes == indexes  # blue's chunk went; the index in use stayed
    assert index(class_folders, cache) == 0                # and nothing is computed again
    assert sorted(cache.glob("features/*/*.npz")) == kept_chunks
    assert sorted(cache.glob("indexes/*")) == kept_indexes


def test_a_catalogue_changed_today_keeps_the_chunks_its_new_index_read(class_folders, tmp_path):
    cache = tmp_path / "cache"
    assert index(class_folders, cache) == 0
    chunks = sorted(cache.glob("features/*/*.npz"))
    age_everything(cache)
    (class_folders / "red" / "red0.png").unlink()           # today's change: a new index, from stored features
    assert index(class_folders, cache) == 0
    assert main(["prune", "--unused-for", "7", "--cache-dir", str(cache)]) == 0
    assert sorted(cache.glob("features/*/*.npz")) == chunks  # the old index went, its features stayed
    assert len(list(cache.glob("indexes/*"))) == 1


def test_a_store_with_no_chunk_in_use_goes_whole(class_folders, tmp_path):
    cache = tmp_path / "cache"
    assert index(class_folders, cache) == 0
    age_everything(cache)
    assert main(["prune", "--unused-for", "1", "--cache-dir", str(cache)]) == 0
    assert not list((cache / "features").iterdir()) and not list((cache / "indexes").iterdir())


def test_converted_networks_and_thumbnails_in_use_are_kept(class_folders, tmp_path):
    cache = tmp_path / "cache"
    create_backbone("tiny_test", runtime="openvino", cache_dir=cache).warm_up()
    catalogue = load_catalogue(str(class_folders))
    Thumbnails(cache / "thumbnails").path(catalogue, 0)
    age_everything(cache)
    create_backbone("tiny_test", runtime="openvino", cache_dir=cache).warm_up()  # loads the cached network
    Thumbnails(cache / "thumbnails").path(catalogue, 0)  # a new process shows the same thumbnail
    assert main(["prune", "--unused-for", "7", "--cache-dir", str(cache)]) == 0
    assert list(cache.glob("openvino/*/model.xml")) and list(cache.glob("thumbnails/*/0.*"))


@pytest.mark.parametrize("days", ["0", "-1", "nan"])
def test_unused_for_must_be_positive(days, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["prune", "--unused-for", days, "--cache-dir", str(tmp_path)])
    assert exit_.value.code == 2 and "--unused-for must be more than 0 days" in capsys.readouterr().err
