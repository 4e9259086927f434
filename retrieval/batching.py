"""Concurrent queries share backbone passes. The backbone is the cost of a
query, and on a CPU one pass over 8 images costs far less than 8 passes over
one. Callers hand in preprocessed images and wait; one worker thread takes
whatever has queued up while the previous pass ran and runs it as one batch.
A lone query waits for nothing: batching only happens under load."""

import queue
import threading
from concurrent.futures import Future

import torch

MAX_BATCH = 16  # queries per pass: beyond this a pass is long enough to hold back the next ones


class QueryBatcher:
    """`run` maps a batch tensor (N, ...) to per-item results (N, ...)."""

    def __init__(self, run, max_batch: int = MAX_BATCH):
        self._run, self._max = run, max_batch
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._serve, name="query-batcher", daemon=True)
        self._worker.start()

    def __call__(self, item: torch.Tensor):
        """The result for one preprocessed image (blocks until its batch ran)."""
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
                results = self._run(torch.stack([item for item, _ in batch]))
            except BaseException as e:  # every waiting caller hears of it, the worker lives on
                for _, future in batch:
                    future.set_exception(e)
                continue
            for (_, future), result in zip(batch, results):
                future.set_result(result)
