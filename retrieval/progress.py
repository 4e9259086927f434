"""Progress of long work (feature extraction, fine-tuning) as the app's page
shows it: what is being done, how far along, and about how long is left."""

import time
from dataclasses import dataclass, field


@dataclass
class Progress:
    phase: str = "starting"
    done: int = 0
    total: int = 0
    unit: str = "images"
    started: float = field(default_factory=time.monotonic)
    _first_done: int = 0   # what was already done when this phase began (resumed work)

    def start(self, phase: str, total: int, unit: str = "images", done: int = 0):
        self.phase, self.total, self.unit, self.done, self._first_done = phase, total, unit, done, done
        self.started = time.monotonic()

    def advance(self, done: int):
        self.done = done

    def snapshot(self) -> dict:
        """JSON-able: phase, done, total, percent and an estimate of the seconds left."""
        elapsed, worked = time.monotonic() - self.started, self.done - self._first_done
        left = None
        if self.total and worked > 0 and elapsed > 1:
            left = round((self.total - self.done) * elapsed / worked)
        percent = round(100 * self.done / self.total) if self.total else None
        return {"phase": self.phase, "done": self.done, "total": self.total, "unit": self.unit,
                "percent": percent, "seconds_left": left}
