"""Concurrent queries share backbone passes. The backbone is the cost of a
query, and on a CPU one pass over 8 images costs less than 8 passes over
one. Callers hand in their images and wait; one worker thread takes whatever
has queued up while the previous pass ran and runs it as one batch. A lone
query waits for nothing: batching only happens under load.

All of a query's torch work runs in that one thread: torch called from many
request threads at once gives each its own OpenMP team of spinning threads,
which cost more CPU than the work (measured with 16 request threads)."""

import queue
import threading
from concurrent.futures import Future

MAX_BATCH = 16  # queries per pass: beyond this a pass is long enough to hold back the next ones


class QueryBatcher:
    """`run` maps a list of items to the list of their results."""

    def __init__(self, run, max_batch: int = MAX_BATCH):
        self._run, self._max = run, max_batch
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._serve, name="query-batcher", daemon=True)
        self._worker.start()

    def __call__(self, item):
        """The result for one item (blocks until its batch ran)."""
        future: Future = Future()
        self._queue.put((item, future))
        return future.result()

    def _serve(self):
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                results = self._run([item for item, _ in batch])
            except BaseException as e:  # every waiting caller hears of it, the worker lives on
                for _, future in batch:
                    future.set_exception(e)
                continue
            for (_, future), result in zip(batch, results):
                future.set_result(result)
