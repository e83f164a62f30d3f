"""`file:///abs/dir`: objects as files under a directory (the embedded default).

Write-once is a hard link of a fully written temporary file onto the final name: link(2)
fails when the name exists, so two writers cannot both win and readers never see a partial
object. Objects and directories are created with the process umask applied (0644 and 0755 under
the usual 022), so another account of the team can read them.

The store's directory itself is created when missing, but not its parent: a path with a typo
is refused rather than silently started somewhere nobody looks.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from eventindex.errors import (
    ConfigError,
    ForbiddenLocationError,
    ObjectExistsError,
    ObjectNotFoundError,
    OversizedObjectError,
    StoreError,
    StoreUnavailableError,
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


def existing_parent(path: Path, what: str) -> None:
    """Refuse `path` when its parent directory does not exist (ConfigError): a typo is not created."""
    if not path.parent.is_dir():
        raise ConfigError(f"{what} {path}: directory {path.parent} does not exist")


class LocalStore(ObjectStore):
    """Objects under `root`. `create`: make `root` when it is missing (its parent must exist);
    otherwise a missing `root` is refused (ConfigError)."""

    def __init__(self, root: Path, create: bool = True) -> None:
        self.root = root
        self.url = root.as_uri()
        if root.is_dir():
            return
        if not create:
            raise ConfigError(f"store directory {root} does not exist")
        existing_parent(root, "store directory")
        try:
            root.mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store directory {root}: {exc.strerror}") from exc

    @classmethod
    def from_url(cls, url: str, create: bool = True) -> LocalStore:
        return cls(file_url_path(url), create)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        self._check_root()  # never recreate a store directory that went away (under an unmounted mount point)
        try:
            tmp, fd = self._create_temporary(path)
        except OSError as exc:  # FileExistsError too: a file where a directory of the key should be
            self._check_root()  # gone meanwhile: the store's outage, not this object's failure
            raise StoreError(f"cannot write {key} in {self.url}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(tmp, path)
        except FileExistsError:
            raise ObjectExistsError(f"object {key} already exists in {self.url}") from None
        except OSError as exc:
            self._check_root()
            raise StoreError(f"cannot write {key} in {self.url}: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _make_dir(self, directory: Path) -> None:
        """`directory` and its missing parents below the store's root, the deepest tried first (one mkdir
        for a key whose directory exists). The root itself is never made: one that went away, e.g. under an
        unmounted mount point, fails with FileNotFoundError instead of being recreated empty. A directory
        made is given u+rwx whatever the umask, so that a job run with a restrictive umask (0277) does not
        lock every later job of its task out of the task's directory."""
        if directory == self.root:
            return
        try:
            os.mkdir(directory)
        except FileExistsError:
            return
        except FileNotFoundError:
            self._make_dir(directory.parent)
            try:
                os.mkdir(directory)
            except FileExistsError:
                return
        mode = os.stat(directory).st_mode
        if mode & 0o700 != 0o700:
            os.chmod(directory, mode | 0o700)

    def _create_temporary(self, path: Path) -> tuple[Path, int]:
        """A new temporary file next to `path`, mode 0666 less the umask (mkstemp would make it 0600).
        Tried twice: a `delete` may remove the emptied directory between the mkdir and the open."""
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
        for tries_left in (1, 0):
            self._make_dir(path.parent)
            tmp = path.parent / f".tmp-{uuid.uuid4().hex}.part"
            try:
                return tmp, os.open(tmp, flags, 0o666)
            except FileNotFoundError:
                if not tries_left:
                    raise
        raise AssertionError("unreachable")

    def delete(self, keys: Sequence[str]) -> None:
        """Remove objects (absent ones are no error), then the directories that became empty."""
        emptied: set[Path] = set()
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(f"cannot delete {key} in {self.url}: {exc.strerror}") from exc
            emptied.add(path.parent)
        for directory in sorted(emptied, key=lambda d: len(d.parts), reverse=True):
            while directory != self.root and self.root in directory.parents:
                try:
                    directory.rmdir()
                except OSError:
                    break  # not empty (or gone already): keep it and its parents
                directory = directory.parent

    def get(self, key: str, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> bytes:
        path = self._path(key)
        try:
            with path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > max_bytes:
                    raise OversizedObjectError(f"object {key} is {size} bytes, above the limit of {max_bytes}")
                return handle.read()
        except FileNotFoundError:
            self._check_root()
            raise ObjectNotFoundError(f"object {key} not found in {self.url}") from None
        except IsADirectoryError:
            raise ObjectNotFoundError(f"object {key} not found in {self.url} (a directory)") from None
        except OSError as exc:
            raise StoreError(f"cannot read {key} in {self.url}: {exc.strerror}") from exc

    def _check_root(self) -> None:
        """StoreUnavailableError when the store's directory itself is gone (unmounted, moved): the store's
        failure, to be retried, not every object missing."""
        if not self.root.is_dir():
            raise StoreUnavailableError(f"store directory {self.root} is gone (unmounted or moved?)")

    def list(self, prefix: str = "") -> Iterator[str]:
        self._check_root()
        keys = []
        # walk only the directory the prefix's complete parts name (a task's, not the whole store)
        parts = prefix.split("/")[:-1]
        clean = all(part not in ("", ".", "..") for part in parts)
        top = self.root.joinpath(*parts) if clean else self.root
        for dirpath, dirnames, filenames in os.walk(top):
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
