"""State a persistent worker keeps warm between requests: loaded models and encoder features per image.

Interactive few-shot sends many requests on the same image; re-loading weights (~1 s) and re-running the encoder
on the whole volume (seconds on CPU) for every click would dominate. `WorkerState` is two small LRU caches that
tasks use explicitly (`get_model`, `get_features`); nothing is cached implicitly. Keys are strings chosen by
the task: models by ``"<kind>:<weights path or name>:<device>"``, features by the client's image id (a
fingerprint of the image content, e.g. node id + modification time) plus the model key.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Callable


class LRUCache:
    """A tiny least-recently-used cache with hit/miss counters (not thread-safe: one request at a time)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._items: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def get_or_create(self, key: str, create: Callable[[], Any]) -> Any:
        """Return the cached value for `key`, creating (and caching) it with `create()` on a miss."""
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key]
        self.misses += 1
        value = create()
        self._items[key] = value
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """The cached value (marked recently used) or `default`; does not count as a hit or miss."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        return default

    def put(self, key: str, value: Any) -> None:
        """Store or replace `key` (evicting the least recently used entry when full)."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        return list(self._items)

    def clear(self) -> None:
        self._items.clear()


class WorkerState:
    """Warm state of one worker process: `models` (default 2 entries) and `features` (default 4 images)."""

    def __init__(self, max_models: int = 2, max_features: int = 4):
        self.models = LRUCache(max_models)
        self.features = LRUCache(max_features)
        self.started = time.time()
        self.requests_served = 0

    def get_model(self, key: str, load: Callable[[], Any]) -> Any:
        """The model for `key`, loaded once with `load()` and kept warm."""
        return self.models.get_or_create(key, load)

    def get_features(self, image_id: str, model_key: str, compute: Callable[[], Any]) -> Any:
        """Encoder features of image `image_id` under model `model_key`, computed once with `compute()`."""
        return self.features.get_or_create(f"{model_key}|{image_id}", compute)

    def clear(self) -> None:
        """Drop every cached model and feature map (frees memory; the next request re-loads)."""
        self.models.clear()
        self.features.clear()

    def info(self) -> dict[str, Any]:
        """JSON-serialisable summary for `worker.info`."""
        return {
            "uptime_s": round(time.time() - self.started, 3),
            "requests_served": self.requests_served,
            "models": self.models.keys(),
            "features": self.features.keys(),
            "model_hits": self.models.hits, "model_misses": self.models.misses,
            "feature_hits": self.features.hits, "feature_misses": self.features.misses,
        }
