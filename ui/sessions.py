"""Forget the sessions of one-shot API calls. Gradio keeps, per session, a
copy of the page's configuration with the last value of every output, for
up to 10,000 sessions; the REST route (`/gradio_api/call/...`) opens a new
session for every call, so each call left a whole answer (~110 KB of data
URLs) in memory: 1.1 -> 2.5 GB over seven minutes of 32 users. Browser
tabs announce themselves when the page loads; every other session is
dropped once it has been idle for IDLE seconds (a later call from the same
client simply starts a new one: API calls carry no state)."""

import threading
import time

IDLE, EVERY = 15.0, 5.0


class SessionSweeper:
    def __init__(self, demo, idle: float = IDLE):
        self.demo, self.idle = demo, idle
        self.pages: set = set()  # session hashes of browser tabs (they ran the page's load event)

    def page_loaded(self, session_hash: str | None):
        if session_hash:
            self.pages.add(session_hash)

    def sweep(self, now: float | None = None) -> int:
        """Drop idle non-page sessions; how many were dropped."""
        holder, queue = getattr(self.demo, "state_holder", None), getattr(self.demo, "_queue", None)
        if holder is None:
            return 0
        now = time.time() if now is None else now
        with holder.lock:
            idle = [sid for sid, used in holder.time_last_used.items()
                    if sid not in self.pages and now - used.timestamp() > self.idle]
            for sid in idle:
                holder.session_data.pop(sid, None)
                holder.time_last_used.pop(sid, None)
            self.pages &= set(holder.session_data)  # tabs gradio itself evicted
        if queue is not None:
            for sid in idle:
                if not queue.pending_event_ids_session.get(sid):
                    queue.pending_event_ids_session.pop(sid, None)
                    queue.pending_messages_per_session.pop(sid, None)
        return len(idle)

    def start(self) -> threading.Thread:
        def run():
            while True:
                time.sleep(EVERY)
                self.sweep()
        thread = threading.Thread(target=run, name="session-sweeper", daemon=True)
        thread.start()
        return thread
