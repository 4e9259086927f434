"""The Milvus backend against exact search, on Milvus Lite started in
tmp_path: one collection of 10,000 random 32-d items (10 per `bucket`, so
`bucket == 7` is 0.1%) built once for the module; tests that change data
build their own small ones. Filters are written in the `--where` language
and translated by Where.to_milvus(field=index.field)."""

import logging
import subprocess
import sys
import textwrap
import time
from concurrent import futures
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from retrieval.errors import DamagedArtefact, LookalikeError
from retrieval.index.milvus_index import MilvusIndex, MilvusTarget, collection_name, default_uri
from retrieval.search.where import parse_where
from retrieval.vectors import l2_normalise, recall_at_k, top_k

pytest.importorskip("milvus_lite")

N, DIM, K = 10_000, 32, 10
FPS = {"catalogue_source": "shop", "embedder_fingerprint": "emb-1"}
ODD = 'Quo"te \\ back\\slash \'single\' \\"both\\"'  # a make with quotes and backslashes
TYPES = {"bucket": "integer", "make": "string", "price": "float", "body style": "string", "in": "boolean"}


def make_data(n=N, dim=DIM, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    keys = rng.choice(2**62, size=n, replace=False).astype(np.int64)  # content keys: large, unordered
    make = np.array(["Audi", "BMW", "Fiat", ODD], dtype=object)[rng.integers(0, 4, n)]
    make[rng.random(n) < 0.05] = None
    price = rng.uniform(1_000, 60_000, n)
    price[rng.random(n) < 0.1] = np.nan  # NaN counts as missing
    table = pa.table({"bucket": rng.permutation(np.arange(n) % 1000),  # selectivity independent of the vectors
                      "make": pa.array(make.tolist(), pa.string()), "price": pa.array(price, from_pandas=True),
                      "body style": pa.array(rng.choice(["SUV", "Sedan", "Van"], n).tolist()),  # not a Milvus name
                      "in": pa.array(rng.random(n) < 0.5)})  # a filter keyword
    return keys, vectors, table


def exact(keys, vectors, queries, k, mask=None):
    """Exact top-k keys and scores per query among the rows in `mask`."""
    rows = np.arange(len(keys)) if mask is None else np.flatnonzero(mask)
    found, scores = top_k(l2_normalise(vectors[rows]), l2_normalise(queries), k)
    return keys[rows][found], scores


def queries(n=40, dim=DIM, seed=5):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    target = MilvusTarget(str(tmp_path_factory.mktemp("lite") / "lookalike.db"), collection_name(FPS))
    keys, vectors, table = make_data()
    index = MilvusIndex.build(target, vectors, dict(FPS, catalogue_fingerprint="c1"), keys=keys, metadata=table,
                              progress=False)
    yield target, index, keys, vectors, table
    index.close(release_lite=True)


@pytest.fixture
def small(tmp_path):
    target = MilvusTarget(str(tmp_path / "small.db"), "small")
    keys, vectors, table = make_data(500, 16, seed=1)
    index = MilvusIndex.build(target, vectors, dict(FPS, catalogue_fingerprint="c1"), keys=keys, metadata=table,
                              progress=False)
    yield target, index, keys, vectors, table
    index.close(release_lite=True)


def test_build_and_search_agree_with_exact_search(built):
    target, index, keys, vectors, _ = built
    q = queries()
    found, scores = index.search(q, K)
    truth, truth_scores = exact(keys, vectors, q, K)
    assert found.shape == scores.shape == (len(q), K) and found.dtype == np.int64 and scores.dtype == np.float32
    assert (found == truth).all()  # FLAT on Lite: exact
    np.testing.assert_allclose(scores, truth_scores, atol=1e-5)  # cosines, best first
    assert (index.search(q, K, exact=True)[0] == truth).all()
    assert len(index) == N and index.meta["recall_at_10"] == 1.0 and index.meta["index_type"] == "FLAT"
    assert "milvus (Milvus Lite)" in index.summary() and "FLAT IP" in index.summary()
    assert index.has(np.r_[keys[:3], 5]).tolist() == [True, True, True, False]
    np.testing.assert_allclose(index.vectors(keys[[4, 2, 4]]), l2_normalise(vectors[[4, 2, 4]]), atol=1e-6)
    with pytest.raises(KeyError):
        index.vectors([keys[0], 5])
    assert (index.all_keys() == np.sort(keys)).all()
    assert default_uri("/c") == "/c/milvus/lookalike.db" and "token" not in repr(MilvusTarget("a.db", "n", "x:y"))


SELECTIVE = [
    ("bucket < 500", 0.5),
    ("bucket < 50", 0.05),
    ("bucket == 7", 0.001),
    ('make != "Audi" and price <= 30000 and `body style` in ["SUV", "Van"]', None),
    ('(make == query.make or `in` == true) and not (bucket >= 900)', None),
]


@pytest.mark.parametrize("text, share", SELECTIVE)
def test_filtered_search_agrees_with_exact_filtered_search_and_fills_k(built, text, share):
    target, index, keys, vectors, table = built
    where = parse_where(text, TYPES)
    query_item = {"make": "BMW"}
    mask = where.mask(table, query_item)
    assert share is None or mask.mean() == share
    q = queries()
    found, scores = index.search(q, K, expr=where.to_milvus(query_item, field=index.field))
    truth, truth_scores = exact(keys, vectors, q, K, mask)
    assert (found >= 0).all() and not np.isnan(scores).any(), "k results whenever k items match"
    assert np.isin(found, keys[mask]).all(), "only matching items"
    assert (found == truth).all()  # FLAT: exact (recall 1.0)
    np.testing.assert_allclose(scores, truth_scores, atol=1e-5)


def test_fewer_matches_than_k_are_padded(built):
    target, index, keys, vectors, table = built
    found, scores = index.search(queries(5), 20, expr="bucket == 7")
    assert ((found >= 0).sum(axis=1) == 10).all() and (found[:, 10:] == -1).all() and np.isnan(scores[:, 10:]).all()
    found, scores = index.search(queries(3), K, expr="bucket == 1000")  # nothing matches
    assert (found == -1).all() and np.isnan(scores).all()


def test_field_names_are_mapped_and_recorded(built, tmp_path):
    target, index, *_ = built
    assert index.field("bucket") == "bucket" and index.field("make") == "make"
    stored = {name: index.field(name) for name in ("body style", "in")}
    assert stored == {"body style": "f3_body_style", "in": "f4_in"}
    assert index.meta["fields"]["body style"] == {"field": "f3_body_style", "type": "varchar"}
    assert MilvusIndex.open(target, FPS).field("body style") == "f3_body_style"  # recorded with the collection
    with pytest.raises(LookalikeError, match="holds no field 'colour'"):
        index.field("colour")
    with pytest.raises(LookalikeError, match="holds no field 'colour'"):
        parse_where('colour == "red"', {"colour": "string"}).to_milvus(field=index.field)


def test_a_string_with_quotes_and_backslashes_filters_right(built):
    target, index, keys, vectors, table = built
    q = queries(20)
    typed = 'make == "' + ODD.replace("\\", "\\\\").replace('"', '\\"') + '"'  # as a user types it
    for where, query_item in [(parse_where(typed, TYPES), None), (parse_where("make == query.make", TYPES),
                                                                  {"make": ODD})]:
        mask = where.mask(table, query_item)
        assert 0 < mask.mean() < 0.3
        found, _ = index.search(q, K, expr=where.to_milvus(query_item, field=index.field))
        assert (found == exact(keys, vectors, q, K, mask)[0]).all()
    near = parse_where("make == query.make", TYPES).to_milvus({"make": ODD[:-1]}, field=index.field)
    assert (index.search(q, K, expr=near)[0] == -1).all()


def test_update_adds_and_removes_also_after_reopening(small):
    target, index, keys, vectors, table = small
    rng = np.random.default_rng(9)
    new_keys, new_vectors = np.array([11, 2**62 + 5]), rng.normal(size=(2, vectors.shape[1])).astype(np.float32)
    new_table = pa.table({"bucket": [5000, 5001], "make": ["Tesla", None]})  # fields left out are null
    gone = keys[:50]
    index.update(new_vectors, new_keys, gone, dict(FPS, catalogue_fingerprint="c2"), metadata=new_table)

    def check(index):
        assert len(index) == index.meta["n_items"] == len(keys) - 50 + 2
        assert index.meta["catalogue_fingerprint"] == "c2" and index.meta["backend"] == "milvus"
        found, scores = index.search(new_vectors, 3)
        assert (found[:, 0] == new_keys).all() and np.allclose(scores[:, 0], 1.0, atol=1e-5)  # found first for itself
        assert index.search(new_vectors[:1], 3, expr='make == "Tesla"')[0].tolist() == [[11, -1, -1]]
        for exact_search in (False, True):
            found, _ = index.search(vectors[:50], 5, exact=exact_search)
            assert not np.isin(found, gone).any()  # never returned again
        assert not index.has(gone).any() and index.has(new_keys).all()
        assert np.isin(new_keys, index.all_keys()).all() and not np.isin(gone, index.all_keys()).any()

    check(index)
    index.close(release_lite=True)  # stops Lite in this process: reopening reads the database again
    check(MilvusIndex.open(target, FPS))


def test_an_unfinished_build_or_update_opens_as_absent(small):
    target, index, *_ = small
    assert MilvusIndex.open(target, FPS) is not None
    index.client.alter_collection_properties(target.name, {"lookalike.state": "updating"})  # as if it died
    assert MilvusIndex.open(target, FPS) is None
    assert MilvusIndex.open(MilvusTarget(target.uri, "absent"), FPS) is None


def test_a_collection_lookalike_did_not_write_is_never_dropped(small):
    target, index, keys, vectors, table = small
    theirs = MilvusTarget(target.uri, "theirs")
    index.client.create_collection("theirs", dimension=4)
    index.client.insert("theirs", [{"id": 1, "vector": [0.1, 0.2, 0.3, 0.4]}])
    with pytest.raises(LookalikeError, match="was not written by Lookalike: refusing to drop it"):
        MilvusIndex.build(theirs, vectors, dict(FPS, catalogue_fingerprint="c1"), keys=keys, metadata=table,
                          progress=False)
    assert index.client.has_collection("theirs")
    rebuilt = MilvusIndex.build(target, vectors[:10], dict(FPS, catalogue_fingerprint="c2"), keys=keys[:10],
                                metadata=table.slice(0, 10), progress=False)  # its own collection: replaced
    assert rebuilt.meta["n_items"] == 10


def test_other_fingerprints_are_refused(small):
    target, index, *_ = small
    with pytest.raises(LookalikeError, match=r"index in collection small in Milvus Lite .* was built for another "
                                             r"catalogue or model \(embedder_fingerprint: index has 'emb-1', "
                                             r"wanted 'emb-2'\)\. Rebuild it"):
        MilvusIndex.open(target, dict(FPS, embedder_fingerprint="emb-2"))
    with pytest.raises(DamagedArtefact, match="missing: head_fingerprint"):
        MilvusIndex.open(target, dict(FPS, head_fingerprint="h"))


def test_an_approximate_index_that_comes_back_short_is_refilled_exactly(small, monkeypatch):
    """A graph index can return fewer than k under a selective filter
    (Lite's HNSW always did at 0.1%): simulated by cutting results to 3."""
    target, index, keys, vectors, table = small
    hnsw = MilvusIndex.build(MilvusTarget(target.uri, "hnsw"), vectors, FPS, keys=keys, metadata=table,
                             index_type="HNSW", progress=False)
    search = hnsw.client.search
    monkeypatch.setattr(hnsw.client, "search", lambda *a, **kw: [hits[:3] for hits in search(*a, **kw)])
    where = parse_where("bucket < 100", TYPES)
    mask = where.mask(table)
    found, _ = hnsw.search(vectors[:4], K, expr=where.to_milvus(field=hnsw.field))
    assert (found == exact(keys, vectors, vectors[:4], K, mask)[0]).all()
    assert (hnsw.search(vectors[:4], K, exact=True)[0] == exact(keys, vectors, vectors[:4], K)[0]).all()


def test_a_process_that_fine_tunes_can_still_search_milvus_lite(tmp_path):
    """pytorch-metric-learning's samplers patch faiss's search process-wide,
    and Milvus Lite runs faiss in this process: the fine-tuner imports them
    without that patch, so filtered searches keep working after it."""
    script = textwrap.dedent(f"""
        import numpy as np, pyarrow as pa
        import finetune.cli
        from retrieval.index.milvus_index import MilvusIndex, MilvusTarget
        vectors = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
        index = MilvusIndex.build(MilvusTarget({str(tmp_path / "lite.db")!r}, "c"), vectors, {FPS!r},
                                  keys=np.arange(50), metadata=pa.table({{"bucket": list(range(50))}}),
                                  index_type="HNSW", progress=False)
        found, _ = index.search(vectors[:1], 3, expr="bucket < 10")
        print(sorted(found[0].tolist()) == sorted(set(found[0].tolist()) & set(range(10))), found[0][0] == 0)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["True", "True"]


def test_a_bad_expression_is_one_line_without_a_logged_traceback(small):
    target, index, keys, vectors, table = small
    logged = []
    handler = logging.Handler()
    handler.emit = logged.append
    logging.getLogger("pymilvus.decorators").addHandler(handler)  # where pymilvus logs each failed call
    try:
        with pytest.raises(LookalikeError, match="bad filter expression 'nosuch > 1': unknown field") as e:
            index.search(vectors[:2], K, expr="nosuch > 1")
    finally:
        logging.getLogger("pymilvus.decorators").removeHandler(handler)
    assert "\n" not in str(e.value) and not logged


def test_an_engine_failure_during_a_filtered_search_is_not_blamed_on_the_filter():
    """A Milvus server's parse error is the expression's; a failure inside the
    engine (faiss, a query node) while a filter is given is the engine's."""
    from pymilvus.exceptions import MilvusException

    from retrieval.index.milvus_schema import explain

    engine = MilvusException(code=65535, message="fail to search on QueryNode 1: faiss assertion failed")
    said = explain("http://milvus:19530", "search", engine, "bucket < 10")
    assert "bad filter" not in said and "search failed: fail to search on QueryNode 1" in said
    parse = MilvusException(code=1100, message="failed to create query plan: cannot parse expression: nosuch > 1")
    said = explain("http://milvus:19530", "search", parse, "nosuch > 1")
    assert said.startswith("bad filter expression 'nosuch > 1'")


def test_an_unreachable_uri_is_one_clear_line_quickly():
    started = time.perf_counter()
    with pytest.raises(LookalikeError, match=r"can't reach Milvus at http://127\.0\.0\.1:1: is it running") as e:
        MilvusIndex.open(MilvusTarget("http://127.0.0.1:1", "c"), FPS)
    assert "\n" not in str(e.value) and time.perf_counter() - started < 15
    with pytest.raises(LookalikeError, match="must be a path ending in .db"):
        MilvusIndex.open(MilvusTarget("lookalike.sqlite", "c"), FPS)


def test_a_bad_token_is_one_clear_line():
    """Milvus Lite has no authentication: a stand-in answers every call as
    Milvus does for a wrong token (gRPC UNAUTHENTICATED, "auth check failure")."""
    import grpc

    class Refuse(grpc.GenericRpcHandler):
        def service(self, details):
            def abort(request, context):
                context.abort(grpc.StatusCode.UNAUTHENTICATED,
                              "auth check failure, please check username and password are correct")
            return grpc.unary_unary_rpc_method_handler(abort)

    server = grpc.server(futures.ThreadPoolExecutor(2), handlers=[Refuse()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with pytest.raises(LookalikeError, match="refused the credentials.*auth check failure.*--milvus-token") as e:
            MilvusIndex.open(MilvusTarget(f"http://127.0.0.1:{port}", "c", token="root:wrong"), FPS)
        assert "\n" not in str(e.value) and "wrong" not in str(e.value)
    finally:
        server.stop(0)


def test_a_database_open_in_another_process_is_one_clear_line(small):
    target, index, *_ = small
    index.close(release_lite=True)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from retrieval.index.milvus_index import MilvusIndex, MilvusTarget
        MilvusIndex.open(MilvusTarget({target.uri!r}, "small"), {FPS!r}); print("open", flush=True); time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(LookalikeError, match="is open in another process: Milvus Lite serves one process") as e:
            MilvusIndex.open(target, FPS)
        assert "\n" not in str(e.value)
    finally:
        holder.kill()
        holder.wait()


def test_the_same_code_against_a_server_uri(tmp_path):
    """`milvus-lite server` (another process speaking Milvus' gRPC protocol)
    stands in for a Milvus server: an http:// URI takes the server path
    (AUTOINDEX), and a second client sees the same collection."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir",
                               str(tmp_path / "served.db"), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):  # until it listens
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        target = MilvusTarget(f"http://127.0.0.1:{port}", "served")
        keys, vectors, table = make_data(800, 16, seed=2)
        index = MilvusIndex.build(target, vectors, FPS, keys=keys, metadata=table, progress=False)
        assert index.meta["index_type"] == "AUTOINDEX" and "Milvus server" in index.summary()
        where = parse_where("bucket < 300 and `body style` != \"Van\"", TYPES)
        q = queries(10, 16)
        found, _ = index.search(q, K, expr=where.to_milvus(field=index.field))
        assert recall_at_k(found, exact(keys, vectors, q, K, where.mask(table))[0]) >= 0.95
        again = MilvusIndex.open(target, FPS)
        assert len(again) == 800 and (again.search(q, K, expr=where.to_milvus(field=again.field))[0] == found).all()
    finally:
        server.kill()
        server.wait()
