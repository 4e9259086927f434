import threading
import time

import pytest

from retrieval.search.batching import QueryBatcher


def test_concurrent_queries_share_passes_and_get_their_own_results():
    passes = []

    def run(batch):
        passes.append(len(batch))
        time.sleep(0.05)  # a backbone pass: queries arriving meanwhile wait for the next one
        return [item * 2 for item in batch]

    batcher = QueryBatcher(run)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher(float(i))))
               for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: 2.0 * i for i in range(12)}
    assert sum(passes) == 12 and len(passes) < 12  # batched under load
    assert batcher(5.0) == 10.0 and passes[-1] == 1  # alone: its own pass


def test_a_failing_pass_fails_its_callers_and_not_the_next():
    calls = []

    def run(batch):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return batch

    batcher = QueryBatcher(run)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher(0)
    assert batcher(1) == 1
