"""`file:///abs/dir`: objects as files under a directory (the embedded default).

Write-once is a hard link of a fully written temporary file onto the final name: link(2)
fails when the name exists, so two writers cannot both win and readers never see a partial
object.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from eventindex.errors import (
    ConfigError,
    ForbiddenLocationError,
    ObjectExistsError,
    ObjectNotFoundError,
    OversizedObjectError,
    StoreError,
)
from eventindex.store.base import DEFAULT_MAX_OBJECT_BYTES, ObjectStore, check_key


def file_url_path(url: str) -> Path:
    """The absolute directory of a `file:///abs/dir` URL."""
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise ConfigError(f"{url!r}: expected file:///absolute/path with no host, query or fragment")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ConfigError(f"{url!r}: the path must be absolute")
    return Path(path)


class LocalStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store directory {root}: {exc.strerror}") from exc

    @classmethod
    def from_url(cls, url: str) -> LocalStore:
        return cls(file_url_path(url))

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.link(tmp, path)
            finally:
                os.unlink(tmp)
        except FileExistsError:
            raise ObjectExistsError(f"object {key} already exists in {self.url}") from None
        except OSError as exc:
            raise StoreError(f"cannot write {key} in {self.url}: {exc.strerror}") from exc

    def get(self, key: str, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> bytes:
        path = self._path(key)
        try:
            with path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > max_bytes:
                    raise OversizedObjectError(f"object {key} is {size} bytes, above the limit of {max_bytes}")
                return handle.read()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"object {key} not found in {self.url}") from None
        except IsADirectoryError:
            raise ObjectNotFoundError(f"object {key} not found in {self.url} (a directory)") from None
        except OSError as exc:
            raise StoreError(f"cannot read {key} in {self.url}: {exc.strerror}") from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        keys = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, self.root)
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        yield from sorted(keys)

    def object_url(self, key: str) -> str:
        return self._path(key).as_uri()

    def key_for_url(self, url: str) -> str:
        try:
            path = file_url_path(url)
        except ConfigError as exc:
            raise ForbiddenLocationError(f"pointer URL {url!r} is not a file URL of this store") from exc
        root = str(self.root).rstrip("/") + "/"
        if not str(path).startswith(root):
            raise ForbiddenLocationError(f"pointer URL {url!r} lies outside the store {self.url}")
        return check_key(str(path)[len(root) :])
