"""Bounded concurrent upload of chunk objects.

The caller's thread reads and encodes; a small thread pool stores. Between the two sits a window
of at most `window` chunks and `window_bytes` encoded bytes (always at least one chunk): `submit`
blocks while the window is full, so memory is bounded whatever the size of the input — one table
being encoded plus the window.

Each chunk is reported to `on_stored` (which announces its pointer) in the caller's thread, only
after its upload succeeded, and in seq order: a chunk that finished early waits for the ones before
it. Seq order keeps the pointer stream, the progress line and `--fail-after-chunks` deterministic;
the cost is that a slow upload delays later announcements (never later uploads, up to the window).

When anything fails — an upload, the caller (an input error, an interrupt) — the uploads not yet
started are cancelled, the running ones are waited for (a multipart upload that fails or is cut
short aborts itself), nothing further is announced, and the error propagates. Chunks already
stored but not announced are harmless: without the manifest the attempt is incomplete, and a
rerun of the same attempt finds identical objects and reuses them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from eventindex.codec import EncodedObject
from eventindex.errors import ConfigError

DEFAULT_THREADS = 4
MAX_THREADS = 64
#: Encoded bytes held in the window (queued plus uploading), unless one chunk alone is bigger.
DEFAULT_WINDOW_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class UploadConfig:
    threads: int = DEFAULT_THREADS
    #: chunks in flight (queued plus uploading); 0 means twice the threads
    window: int = 0
    window_bytes: int = DEFAULT_WINDOW_BYTES

    def __post_init__(self) -> None:
        if not 1 <= self.threads <= MAX_THREADS:
            raise ConfigError(f"--threads must be in 1..{MAX_THREADS}")
        if self.window < 0:
            raise ConfigError("the upload window cannot be negative")
        if self.window_bytes < 1:
            raise ConfigError("the upload window needs at least one byte")

    @property
    def chunks_in_flight(self) -> int:
        return self.window or 2 * self.threads


@dataclass(frozen=True)
class Chunk:
    seq: int
    key: str
    obj: EncodedObject


class Uploader:
    """`with Uploader(store_one=..., on_stored=...) as up: up.submit(chunk) ...; up.finish()` (see the module
    docstring)."""

    def __init__(
        self,
        *,
        store_one: Callable[[Chunk], None],
        on_stored: Callable[[Chunk], None],
        config: UploadConfig | None = None,
    ) -> None:
        self.config = config or UploadConfig()
        self._store_one = store_one
        self._on_stored = on_stored
        self._pool = ThreadPoolExecutor(max_workers=self.config.threads, thread_name_prefix="ei-upload")
        self._window: deque[tuple[Chunk, Future[None]]] = deque()
        self._bytes = 0
        #: the most chunks and bytes the window ever held (for tests and reports)
        self.peak_chunks = 0
        self.peak_bytes = 0

    @property
    def in_flight(self) -> int:
        return len(self._window)

    def submit(self, chunk: Chunk) -> None:
        """Queue one chunk for upload; first wait (announcing finished chunks) while the window is full."""
        limit, limit_bytes = self.config.chunks_in_flight, self.config.window_bytes
        while self._window and (len(self._window) >= limit or self._bytes + chunk.obj.size > limit_bytes):
            self._complete_oldest()
        future = self._pool.submit(self._store_one, chunk)
        self._window.append((chunk, future))
        self._bytes += chunk.obj.size
        self.peak_chunks = max(self.peak_chunks, len(self._window))
        self.peak_bytes = max(self.peak_bytes, self._bytes)
        # Announce the uploads already done, but never the chunk just submitted: it is announced at the next
        # submit or at finish(), so whether a job turns out to be one chunk is known by then (producer.job).
        while len(self._window) > 1 and self._window[0][1].done():
            self._complete_oldest()

    def _complete_oldest(self) -> None:
        chunk, future = self._window[0]
        future.result()  # the upload's error, if any, propagates here
        self._window.popleft()
        self._bytes -= chunk.obj.size
        self._on_stored(chunk)

    def finish(self) -> None:
        """Wait for every upload and announce each; the first failure propagates."""
        while self._window:
            self._complete_oldest()

    def cancel(self) -> None:
        """Cancel the queued uploads, wait for the running ones, announce nothing more."""
        for _, future in self._window:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._window.clear()
        self._bytes = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if et is not None or self._window:
            self.cancel()
        self._pool.shutdown(wait=True)
