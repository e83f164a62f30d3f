"""`file:///abs/dir`: objects as files under a directory (the embedded default).

Write-once is a hard link of a fully written temporary file onto the final name: link(2)
fails when the name exists, so two writers cannot both win and readers never see a partial
object. Objects and directories are created with the process umask applied (0644 and 0755 under
the usual 022), so another account of the team can read them.

The store's directory itself is created when missing, but not its parent: a path with a typo
is refused rather than silently started somewhere nobody looks.

Reading, listing and deleting never follow a symbolic link below the store's directory: anyone who
can write to a shared store (every grid job) could otherwise point a task's directory at another
store, and the supersink would load, then delete, objects that are not its own. Such an object is
not found; the store's directory itself may be a link.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
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
    if parts.scheme == "file" and parts.netloc not in ("", "localhost"):  # a host, or user-info: never echoed
        raise ConfigError("a file URL must have no host or user part: expected file:///absolute/path")
    if parts.scheme != "file" or parts.query or parts.fragment:
        raise ConfigError(f"{url!r}: expected file:///absolute/path with no host, query or fragment")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ConfigError(f"{url!r}: the path must be absolute")
    return Path(path)


def existing_parent(path: Path, what: str) -> None:
    """Refuse `path` when its parent directory does not exist (ConfigError): a typo is not created."""
    if not path.parent.is_dir():
        raise ConfigError(f"{what} {path}: directory {path.parent} does not exist")


#: how a directory below the root is opened: never through a symbolic link
_BENEATH = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: how an object is opened: not through a link, and without blocking on a FIFO put in its place
_OBJECT = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a directory on its path is a symbolic link, which the store does not follow"
    return exc.strerror or str(exc)


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

    def _parent_fd(self, key: str, make: bool = False) -> tuple[int, str]:
        """An open descriptor of the directory that holds `key`'s object, reached from the root one
        directory at a time without following a symbolic link, and the object's name. OSError: ELOOP
        for a link on the way, ENOTDIR for a file, FileNotFoundError for a missing directory (`make`:
        missing directories are made, each given u+rwx whatever the umask, so that a job run with a
        restrictive umask (0277) does not lock every later job of its task out of the task's directory).
        The root itself is never made: one that went away, e.g. under an unmounted mount point, fails
        with FileNotFoundError instead of being recreated empty."""
        *directories, name = check_key(key).split("/")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for directory in directories:
                made = False
                if make:
                    try:
                        os.mkdir(directory, dir_fd=fd)
                        made = True
                    except FileExistsError:
                        pass
                try:
                    inner = os.open(directory, _BENEATH, dir_fd=fd)
                except NotADirectoryError:  # what O_DIRECTORY | O_NOFOLLOW gives for a link, too
                    if stat.S_ISLNK(os.lstat(directory, dir_fd=fd).st_mode):
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
                    raise
                os.close(fd)
                fd = inner
                if made and os.fstat(fd).st_mode & 0o700 != 0o700:
                    os.fchmod(fd, os.fstat(fd).st_mode | 0o700)
        except BaseException:
            os.close(fd)
            raise
        return fd, name

    def put(self, key: str, data: bytes) -> None:
        """Write the object under a temporary name next to it, then link it in place: readers never see
        it in part, and an object that exists is never replaced (ObjectExistsError). Like reading, it
        goes through no symbolic link below the root: a link in a shared store cannot send a job's
        objects elsewhere."""
        check_key(key)
        self._check_root()  # never recreate a store directory that went away (under an unmounted mount point)
        try:
            parent, name, tmp, fd = self._create_temporary(key)
        except OSError as exc:  # FileExistsError too: a file where a directory of the key should be
            self._check_root()  # gone meanwhile: the store's outage, not this object's failure
            raise StoreError(f"cannot write {key} in {self.url}: {_reason(exc)}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(tmp, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            raise ObjectExistsError(f"object {key} already exists in {self.url}") from None
        except OSError as exc:
            self._check_root()
            raise StoreError(f"cannot write {key} in {self.url}: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            os.close(parent)

    def _create_temporary(self, key: str) -> tuple[int, str, str, int]:
        """The descriptor of `key`'s directory (made if missing), the object's name, and a new temporary
        file there (its name and descriptor), mode 0666 less the umask (mkstemp would make it 0600).
        Tried twice: a `delete` may remove the emptied directory between the mkdir and the open."""
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        for tries_left in (1, 0):
            tmp = f".tmp-{uuid.uuid4().hex}.part"
            try:
                parent, name = self._parent_fd(key, make=True)
            except FileNotFoundError:
                if not tries_left:
                    raise
                continue
            try:
                return parent, name, tmp, os.open(tmp, flags, 0o666, dir_fd=parent)
            except FileNotFoundError:
                os.close(parent)
                if not tries_left:
                    raise
            except BaseException:
                os.close(parent)
                raise
        raise AssertionError("unreachable")

    def delete(self, keys: Sequence[str]) -> None:
        """Remove objects (absent ones are no error), then the directories that became empty. An object
        behind a symbolic link is absent: a link is removed itself, never what it points at."""
        emptied: set[str] = set()
        for key in keys:
            try:
                parent, name = self._parent_fd(key)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    continue  # a directory on the way is a link: nothing of this store's is there
                raise StoreError(f"cannot delete {key} in {self.url}: {exc.strerror}") from exc
            try:
                os.unlink(name, dir_fd=parent)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(f"cannot delete {key} in {self.url}: {exc.strerror}") from exc
            finally:
                os.close(parent)
            if "/" in key:
                emptied.add(key.rsplit("/", 1)[0])
        for directory in sorted(emptied, key=lambda d: d.count("/"), reverse=True):
            while directory:
                try:
                    parent, name = self._parent_fd(directory)
                except OSError:
                    break
                try:
                    os.rmdir(name, dir_fd=parent)
                except OSError:
                    break  # not empty, gone already, or a link: keep it and its parents
                finally:
                    os.close(parent)
                directory = directory.rsplit("/", 1)[0] if "/" in directory else ""

    def get(self, key: str, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> bytes:
        try:
            parent, name = self._parent_fd(key)
            try:
                fd = os.open(name, _OBJECT, dir_fd=parent)
            finally:
                os.close(parent)
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise ObjectNotFoundError(f"object {key} not found in {self.url} (not a regular file)")
                if info.st_size > max_bytes:
                    raise OversizedObjectError(f"object {key} is {info.st_size} bytes, above the limit of {max_bytes}")
                os.set_blocking(fd, True)
                return handle.read()
        except FileNotFoundError:
            self._check_root()
            raise ObjectNotFoundError(f"object {key} not found in {self.url}") from None
        except (IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(f"object {key} not found in {self.url} (a directory on its path)") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ObjectNotFoundError(
                    f"object {key} not found in {self.url}: it is behind a symbolic link, which the store does not "
                    "follow"
                ) from None
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
        if clean and any(self.root.joinpath(*parts[: i + 1]).is_symlink() for i in range(len(parts))):
            return  # a link on the way: nothing of this store's is behind it (os.walk would follow it)
        for dirpath, dirnames, filenames in os.walk(top):  # never into a linked directory below it
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
