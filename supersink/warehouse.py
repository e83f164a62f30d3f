"""The Parquet warehouse: `<warehouse>/<dataset>/<task>/part-NNNNN.parquet` plus `_SUCCESS.json`.

One code path for every filesystem (pyarrow.fs); only the commit marker needs a write-once
primitive of each backend, because the marker is the commit point: readers ignore a task
directory without it, and a second writer of it loses with AlreadyCommittedError.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from eventindex.errors import AlreadyCommittedError, ConfigError, WarehouseError
from eventindex.names import validate_name
from eventindex.store.local import file_url_path

MARKER = "_SUCCESS.json"
PART_TEMPLATE = "part-{:05d}.parquet"


class Warehouse:
    """A warehouse root on some pyarrow filesystem."""

    def __init__(self, url: str, fs: pafs.FileSystem, root: str) -> None:
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")

    @classmethod
    def from_url(cls, url: str) -> Warehouse:
        scheme = urlsplit(url).scheme
        if scheme == "file":
            root = file_url_path(url)
            return cls(root.as_uri(), pafs.LocalFileSystem(), str(root))
        raise ConfigError(f"warehouse URL {url!r}: scheme must be file://")

    def task_dir(self, dataset: str, task: str) -> str:
        return f"{self.root}/{validate_name('dataset', dataset)}/{validate_name('task', task)}"

    def location(self, dataset: str, task: str) -> str:
        return self.task_dir(dataset, task)

    def part_path(self, dataset: str, task: str, index: int) -> str:
        return f"{self.task_dir(dataset, task)}/{PART_TEMPLATE.format(index)}"

    def prepare(self, dataset: str, task: str) -> None:
        try:
            self.fs.create_dir(self.task_dir(dataset, task), recursive=True)
        except OSError as exc:
            raise WarehouseError(f"cannot create {self.task_dir(dataset, task)}: {exc}") from exc

    def read_marker(self, dataset: str, task: str) -> dict[str, Any] | None:
        path = f"{self.task_dir(dataset, task)}/{MARKER}"
        try:
            with self.fs.open_input_stream(path) as stream:
                data = stream.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise WarehouseError(f"cannot read {path}: {exc}") from exc
        try:
            marker: dict[str, Any] = json.loads(data)
        except ValueError as exc:
            raise WarehouseError(f"commit marker {path} is not JSON: {exc}") from exc
        return marker

    def write_marker_once(self, dataset: str, task: str, marker: dict[str, Any]) -> None:
        """Write the commit marker unless one exists (AlreadyCommittedError then)."""
        data = json.dumps(marker, indent=2, sort_keys=True).encode() + b"\n"
        path = Path(self.task_dir(dataset, task)) / MARKER
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".marker-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.link(tmp, path)
            finally:
                os.unlink(tmp)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except FileExistsError:
            raise AlreadyCommittedError(f"{path} exists: the task was committed already") from None
        except OSError as exc:
            raise WarehouseError(f"cannot write {path}: {exc.strerror}") from exc

    def remove_strays(self, dataset: str, task: str, keep: set[str]) -> list[str]:
        """Delete part files a crashed earlier load left that the commit will not list."""
        selector = pafs.FileSelector(self.task_dir(dataset, task), allow_not_found=True)
        removed = []
        for info in self.fs.get_file_info(selector):
            name = info.base_name
            if name.startswith("part-") and name.endswith(".parquet") and name not in keep:
                self.fs.delete_file(info.path)
                removed.append(name)
        return removed
