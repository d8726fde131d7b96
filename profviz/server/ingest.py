"""How much trace data the server decodes at once: a budget of bytes shared by concurrent OTLP
exports. Decoding a body takes about 7x its size in memory (JSON objects, protobuf messages,
span records), so eight 15 MB bodies at once took 1.8 GB; with the budget, the exports beyond it
are told to retry (503 with Retry-After, which OTLP exporters honour) instead of all being held."""

from __future__ import annotations

import threading

INGEST_BUDGET_BYTES = 32 * 1024 * 1024  # two of the largest bodies accepted (formats.otlp.MAX_PAYLOAD_BYTES) at once
RETRY_AFTER_S = 1


class IngestBudget:
    """Bytes of payload being decoded; :meth:`take` never waits."""

    def __init__(self, budget_bytes: int = INGEST_BUDGET_BYTES):
        self.budget_bytes = budget_bytes
        self.in_use = 0
        self.refused = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes (a body larger than the whole budget gets it all, alone); False when they are not free now."""
        size = min(max(0, size), self.budget_bytes)
        with self._lock:
            if self.in_use + size > self.budget_bytes:
                self.refused += 1
                return False
            self.in_use += size
            return True

    def give_back(self, size: int) -> None:
        size = min(max(0, size), self.budget_bytes)
        with self._lock:
            self.in_use = max(0, self.in_use - size)
