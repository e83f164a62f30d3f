"""The warehouse layout and its reading rule, shared by the supersink (which writes it) and readers.

Hive-style partitions: `<root>/dataset=<D>/task=<T>/part-NNNNN.parquet`, so Spark, Hive, DuckDB
and pyarrow pointed at the root discover `dataset` and `task` as partition columns.

- `dataset=<D>/task=<T>/_SUCCESS.json`: the commit marker, written once, last. Its file list and
  row counts are the contract.
- `dataset=<D>/task=<T>/_AMEND-NNNN.json`: an amendment of a partial load (late jobs), written
  once, after its own parts (`part-aNNNN-MMMMM.parquet`). A task's committed files are those of
  its marker and of every amendment.
- `_staging/…`: loads in progress (claims, staged parts); readers skip names starting with `_`.

On a filesystem that renames (local, WebHDFS) the partition tree holds committed parts only. On
S3 a part is visible once uploaded, before its task commits: read the files the markers list
(:meth:`WarehouseReader.committed_tasks`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from eventindex.errors import (
    ConfigError,
    ObjectNotFoundError,
    StoreError,
    StoreUnavailableError,
    WarehouseError,
    WarehouseUnavailableError,
)
from eventindex.names import validate_name
from eventindex.redact import redact
from eventindex.store.base import ObjectStore, open_store
from eventindex.store.local import LocalStore, file_url_path

if TYPE_CHECKING:  # boto3 is imported only when an s3:// warehouse is opened
    from eventindex.store.s3 import S3Location

MARKER = "_SUCCESS.json"
CLAIM = "_CLAIM.json"
DUPLICATES = "_DUPLICATES.json"
STAGING = "_staging"
PART_TEMPLATE = "part-{:05d}.parquet"
AMEND_PART_TEMPLATE = "part-a{:04d}-{:05d}.parquet"
AMEND_TEMPLATE = "_AMEND-{:04d}.json"
MAX_CONTROL_BYTES = 16 * 1024 * 1024
DATASET_KEY = "dataset"
TASK_KEY = "task"


def _s3_filesystem(location: S3Location) -> pafs.S3FileSystem:
    options: dict[str, Any] = {"region": location.region or "us-east-1"}
    if location.endpoint:
        endpoint = urlsplit(location.endpoint)
        options["endpoint_override"] = endpoint.netloc
        options["scheme"] = endpoint.scheme
    if location.ca:
        options["tls_ca_file_path"] = location.ca  # as boto3's verify= for the control objects
    return pafs.S3FileSystem(**options)


def partition(dataset: str, task: str) -> str:
    """The partition path of a task, relative to the warehouse root."""
    return f"{DATASET_KEY}={validate_name('dataset', dataset)}/{TASK_KEY}={validate_name('task', task)}"


def part_name(index: int, amendment: int = 0) -> str:
    """The final name of part `index` of the first load (amendment 0) or of an amendment."""
    return PART_TEMPLATE.format(index) if amendment == 0 else AMEND_PART_TEMPLATE.format(amendment, index)


@dataclass(frozen=True)
class CommittedTask:
    """A committed task as readers should see it: its marker, amendments and committed part files."""

    dataset: str
    task: str
    directory: str
    marker: dict[str, Any]
    amendments: list[dict[str, Any]]

    @property
    def files(self) -> list[str]:
        names = [f["name"] for f in self.marker.get("files", [])]
        for amendment in self.amendments:
            names += [f["name"] for f in amendment.get("files", [])]
        return names

    @property
    def rows(self) -> int:
        return int(self.marker.get("rows", 0)) + sum(int(a.get("rows", 0)) for a in self.amendments)

    @property
    def partial(self) -> bool:
        if self.amendments:
            return bool(self.amendments[-1].get("partial", False))
        return bool(self.marker.get("partial", False))


class WarehouseReader:
    """A warehouse root: Parquet parts on `fs` under `root`, control objects in `control`.

    `renames`: the filesystem moves files atomically (local, WebHDFS), so the partition tree holds
    committed parts only; otherwise (S3) parts appear in place before their commit.
    """

    #: whether from_url creates a local warehouse directory that does not exist (a reader does not)
    CREATES = False

    def __init__(self, url: str, fs: pafs.FileSystem, root: str, control: ObjectStore, *, renames: bool) -> None:
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")
        self.control = control
        self.renames = renames

    @classmethod
    def from_url(cls, url: str, *, create: bool | None = None) -> Self:
        """Open `file:///dir`, `s3://bucket/prefix?endpoint=…[&ca=…]` or `[s]webhdfs://nn:port[,nn2:port]/path`.
        A local directory that does not exist is created when `create` (by default: when the class writes,
        CREATES), else a ConfigError: nothing is created by a reader's typo; nor is an S3 bucket that does not
        exist read as an empty warehouse."""
        scheme = urlsplit(url).scheme
        creates = cls.CREATES if create is None else create
        if scheme == "file":
            path = file_url_path(url)
            if not creates and not path.is_dir():
                raise ConfigError(f"warehouse {path.as_uri()}: no such directory")
            return cls(path.as_uri(), pafs.LocalFileSystem(), str(path), LocalStore(path), renames=True)
        if scheme == "s3":
            from eventindex.store.s3 import S3Location

            location = S3Location.from_url(url)
            root = f"{location.bucket}/{location.prefix}".rstrip("/")
            control = open_store(url, create=creates)  # a reader's bucket must exist
            return cls(url, _s3_filesystem(location), root, control, renames=False)
        if scheme in ("webhdfs", "swebhdfs"):
            from eventindex.store.webhdfs import webhdfs_warehouse

            fs, root, control = webhdfs_warehouse(url)
            return cls(url, fs, root, control, renames=True)
        raise ConfigError(f"warehouse URL {redact(url)!r}: scheme must be file://, s3://, webhdfs:// or swebhdfs://")

    def close(self) -> None:
        self.control.close()

    def task_dir(self, dataset: str, task: str) -> str:
        """The task's partition directory (on `fs`)."""
        return f"{self.root}/{partition(dataset, task)}"

    def location(self, dataset: str, task: str) -> str:
        """Where users find the task: a local path, or a URL."""
        path = self.task_dir(dataset, task)
        if isinstance(self.fs, pafs.LocalFileSystem):
            return path
        if isinstance(self.fs, pafs.S3FileSystem):
            return f"s3://{path}"
        base = self.url.split("?", 1)[0].rstrip("/")
        return f"{base}/{partition(dataset, task)}"

    def _read_json(self, key: str) -> dict[str, Any] | None:
        try:
            data = self.control.get(key, MAX_CONTROL_BYTES)
        except ObjectNotFoundError:
            return None
        except StoreUnavailableError as exc:
            raise WarehouseUnavailableError(str(exc)) from exc  # the store names the key and itself
        except StoreError as exc:
            raise WarehouseError(str(exc)) from exc
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise WarehouseError(f"{key} is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise WarehouseError(f"{key} is not a JSON object")
        return value

    def _read_record(self, key: str) -> dict[str, Any] | None:
        """A commit marker or amendment: a JSON object with its list of part files."""
        record = self._read_json(key)
        files = None if record is None else record.get("files")
        if record is not None and not (
            isinstance(files, list) and all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in files)
        ):
            raise WarehouseError(f"{key}: its list of part files is missing or malformed")
        return record

    def read_marker(self, dataset: str, task: str) -> dict[str, Any] | None:
        return self._read_record(f"{partition(dataset, task)}/{MARKER}")

    def amendments(self, dataset: str, task: str) -> list[dict[str, Any]]:
        """The amendments of a committed task, in order."""
        found: list[dict[str, Any]] = []
        number = 1
        while (
            amendment := self._read_record(f"{partition(dataset, task)}/{AMEND_TEMPLATE.format(number)}")
        ) is not None:
            found.append(amendment)
            number += 1
        return found

    def committed(self, dataset: str, task: str) -> CommittedTask | None:
        marker = self.read_marker(dataset, task)
        if marker is None:
            return None
        return CommittedTask(dataset, task, self.task_dir(dataset, task), marker, self.amendments(dataset, task))

    def committed_tasks(self, datasets: Iterator[str] | None = None) -> Iterator[CommittedTask]:
        """Every committed task under the root (or of the given datasets), by dataset and task name."""
        for dataset in datasets if datasets is not None else self.datasets():
            for task in self._partition_values(f"{self.root}/{DATASET_KEY}={dataset}", TASK_KEY):
                found = self.committed(dataset, task)
                if found is not None:
                    yield found

    def datasets(self) -> list[str]:
        """The datasets that have a partition directory."""
        return self._partition_values(self.root, DATASET_KEY)

    def _partition_values(self, directory: str, key: str) -> list[str]:
        selector = pafs.FileSelector(directory, allow_not_found=True)
        values = []
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise WarehouseError(f"cannot list {directory}: {exc}") from exc
        for info in infos:
            name = info.base_name
            if info.type == pafs.FileType.Directory and name.startswith(f"{key}="):
                value = name[len(key) + 1 :]
                try:
                    values.append(validate_name(key, value))
                except ConfigError:
                    continue  # not ours: a directory someone else put there
        return sorted(values)
