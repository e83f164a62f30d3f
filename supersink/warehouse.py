"""The Parquet warehouse: `<warehouse>/<dataset>/<task>/part-NNNNN.parquet` plus `_SUCCESS.json`.

One code path for every filesystem: the Parquet parts go through a pyarrow filesystem (local or
S3), and the two small control objects go through the project's write-once object store
(exclusive create on files, `If-None-Match: *` on S3):

- `_CLAIM.json`: which supersink loads the task. Written once, before any part; a second
  supersink finds it and stands down for that task (a restart of the same supersink, which keeps
  its owner id in its ledger, resumes).
- `_SUCCESS.json`: the commit marker, written once, last. Readers ignore a task directory
  without it; its file list and row counts are the contract.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from eventindex.errors import (
    AlreadyCommittedError,
    ConfigError,
    ObjectExistsError,
    ObjectNotFoundError,
    StoreError,
    WarehouseError,
)
from eventindex.names import validate_name
from eventindex.store.base import ObjectStore
from eventindex.store.local import LocalStore, file_url_path
from eventindex.store.s3 import S3Location, S3Store

MARKER = "_SUCCESS.json"
CLAIM = "_CLAIM.json"
PART_TEMPLATE = "part-{:05d}.parquet"
MAX_CONTROL_BYTES = 16 * 1024 * 1024


class ClaimedElsewhereError(WarehouseError):
    """Another supersink holds the load claim of this task."""


def _s3_filesystem(location: S3Location) -> pafs.S3FileSystem:
    options: dict[str, Any] = {"region": location.region or "us-east-1"}
    if location.endpoint:
        endpoint = urlsplit(location.endpoint)
        options["endpoint_override"] = endpoint.netloc
        options["scheme"] = endpoint.scheme
    if location.ca:
        options["tls_ca_file_path"] = location.ca  # as boto3's verify= for the control objects
    return pafs.S3FileSystem(**options)


class Warehouse:
    """A warehouse root: Parquet parts on `fs` under `root`, control objects in `control`."""

    def __init__(self, url: str, fs: pafs.FileSystem, root: str, control: ObjectStore) -> None:
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")
        self.control = control

    @classmethod
    def from_url(cls, url: str) -> Warehouse:
        scheme = urlsplit(url).scheme
        if scheme == "file":
            path = file_url_path(url)
            return cls(path.as_uri(), pafs.LocalFileSystem(), str(path), LocalStore(path))
        if scheme == "s3":
            location = S3Location.from_url(url)
            root = f"{location.bucket}/{location.prefix}".rstrip("/")
            return cls(url, _s3_filesystem(location), root, S3Store(location))
        raise ConfigError(f"warehouse URL {url!r}: scheme must be file:// or s3://")

    def close(self) -> None:
        self.control.close()

    # ------------------------------------------------------------ paths

    def _key(self, dataset: str, task: str, name: str) -> str:
        return f"{validate_name('dataset', dataset)}/{validate_name('task', task)}/{name}"

    def task_dir(self, dataset: str, task: str) -> str:
        return f"{self.root}/{validate_name('dataset', dataset)}/{validate_name('task', task)}"

    def location(self, dataset: str, task: str) -> str:
        """Where users find the task: a local path, or an s3:// URL."""
        path = self.task_dir(dataset, task)
        return path if isinstance(self.fs, pafs.LocalFileSystem) else f"s3://{path}"

    def part_path(self, dataset: str, task: str, index: int) -> str:
        return f"{self.task_dir(dataset, task)}/{PART_TEMPLATE.format(index)}"

    def prepare(self, dataset: str, task: str) -> None:
        try:
            self.fs.create_dir(self.task_dir(dataset, task), recursive=True)
        except OSError as exc:
            raise WarehouseError(f"cannot create {self.location(dataset, task)}: {exc}") from exc

    # ------------------------------------------------------------ control objects

    def _read_json(self, dataset: str, task: str, name: str) -> dict[str, Any] | None:
        key = self._key(dataset, task, name)
        try:
            data = self.control.get(key, MAX_CONTROL_BYTES)
        except ObjectNotFoundError:
            return None
        except StoreError as exc:
            raise WarehouseError(f"cannot read {key}: {exc}") from exc
        try:
            value: dict[str, Any] = json.loads(data)
        except ValueError as exc:
            raise WarehouseError(f"{key} is not JSON: {exc}") from exc
        return value

    def _write_json_once(self, dataset: str, task: str, name: str, value: dict[str, Any]) -> None:
        data = json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"
        self.control.put(self._key(dataset, task, name), data)

    def read_marker(self, dataset: str, task: str) -> dict[str, Any] | None:
        return self._read_json(dataset, task, MARKER)

    def write_marker_once(self, dataset: str, task: str, marker: dict[str, Any]) -> None:
        """Write the commit marker unless one exists (AlreadyCommittedError then)."""
        try:
            self._write_json_once(dataset, task, MARKER, marker)
        except ObjectExistsError:
            raise AlreadyCommittedError(f"{self.location(dataset, task)} was committed already") from None
        except StoreError as exc:
            raise WarehouseError(f"cannot write the commit marker of {task}: {exc}") from exc

    def claim(self, dataset: str, task: str, owner: str) -> None:
        """Take the load claim of a task, or confirm we hold it; ClaimedElsewhereError otherwise."""
        claim = {"owner": owner, "claimed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            self._write_json_once(dataset, task, CLAIM, claim)
            return
        except ObjectExistsError:
            pass
        except StoreError as exc:
            raise WarehouseError(f"cannot write the load claim of {task}: {exc}") from exc
        held = self._read_json(dataset, task, CLAIM) or {}
        if held.get("owner") != owner:
            raise ClaimedElsewhereError(
                f"task {task} is being loaded by supersink {held.get('owner', '?')} "
                f"(claimed {held.get('claimed_at', '?')})"
            )

    # ------------------------------------------------------------ parts

    def parts(self, dataset: str, task: str) -> Iterator[str]:
        selector = pafs.FileSelector(self.task_dir(dataset, task), allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            if info.base_name.startswith("part-") and info.base_name.endswith(".parquet"):
                yield info.base_name

    def remove_strays(self, dataset: str, task: str, keep: set[str]) -> list[str]:
        """Delete part files an interrupted earlier load of ours left that the commit will not list."""
        removed = []
        for name in self.parts(dataset, task):
            if name not in keep:
                self.fs.delete_file(f"{self.task_dir(dataset, task)}/{name}")
                removed.append(name)
        return removed
