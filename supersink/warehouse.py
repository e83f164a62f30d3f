"""The Parquet warehouse: Hive-style partitions `<root>/dataset=<D>/task=<T>/part-NNNNN.parquet`.

Readers (Spark, Hive, DuckDB, pyarrow) pointed at the root discover `dataset` and `task` as
partition columns. What they may see is decided here:

- On filesystems that rename (local, WebHDFS), parts are written under a staging directory that
  readers skip (`_staging/…`, with names that do not end in `.parquet`, because DuckDB's `**` glob
  enters `_` directories), synced, and moved into the partition only at commit, right before the
  commit marker. Nothing of a task is under the partition tree before its commit.
- On S3, where nothing renames, a part appears whole or not at all (a PUT, or the completion of a
  multipart upload), in its final place; the markers are the contract there (`ei-supersink
  committed` lists the committed files, or prints the DDL that registers committed partitions).

Control objects go through the project's write-once object store (exclusive create on files and
HDFS, `If-None-Match: *` on S3):

- `_staging/dataset=<D>/task=<T>/_CLAIM.json`: which supersink loads the task. Written once,
  before any part; a second supersink finds it and stands down for that task.
- `dataset=<D>/task=<T>/_SUCCESS.json`: the commit marker, written once, last. Its file list and
  row counts are the contract.
- `dataset=<D>/task=<T>/_AMEND-NNNN.json`: an amendment of a partial load (late jobs), written
  once, after its own parts (`part-aNNNN-MMMMM.parquet`). A task's committed files are those of
  its marker and of every amendment.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
DUPLICATES = "_DUPLICATES.json"
STAGING = "_staging"
STAGED_SUFFIX = ".staged"
PART_TEMPLATE = "part-{:05d}.parquet"
AMEND_PART_TEMPLATE = "part-a{:04d}-{:05d}.parquet"
AMEND_TEMPLATE = "_AMEND-{:04d}.json"
AMEND_RE = re.compile(r"^_AMEND-(\d{4})\.json$")
MAX_CONTROL_BYTES = 16 * 1024 * 1024
DATASET_KEY = "dataset"
TASK_KEY = "task"


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


def partition(dataset: str, task: str) -> str:
    """The partition path of a task, relative to the warehouse root."""
    return f"{DATASET_KEY}={validate_name('dataset', dataset)}/{TASK_KEY}={validate_name('task', task)}"


def part_name(index: int, amendment: int = 0) -> str:
    """The final name of part `index` of the first load (amendment 0) or of an amendment."""
    return PART_TEMPLATE.format(index) if amendment == 0 else AMEND_PART_TEMPLATE.format(amendment, index)


def _part_prefix(amendment: int) -> str:
    return "part-" if amendment == 0 else f"part-a{amendment:04d}-"


def _is_generation(name: str, amendment: int) -> bool:
    """Whether a part file name belongs to the first load (0) or to amendment `amendment`."""
    if amendment == 0:
        return re.fullmatch(r"part-\d{5}\.parquet", name) is not None
    return name.startswith(_part_prefix(amendment)) and name.endswith(".parquet")


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


class Warehouse:
    """A warehouse root: Parquet parts on `fs` under `root`, control objects in `control`.

    `renames`: the filesystem moves files atomically, so parts are staged and moved into place at
    commit; otherwise (S3) they are written in place, each appearing whole.
    """

    def __init__(self, url: str, fs: pafs.FileSystem, root: str, control: ObjectStore, *, renames: bool) -> None:
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")
        self.control = control
        self.renames = renames

    @classmethod
    def from_url(cls, url: str) -> Warehouse:
        scheme = urlsplit(url).scheme
        if scheme == "file":
            path = file_url_path(url)
            return cls(path.as_uri(), pafs.LocalFileSystem(), str(path), LocalStore(path), renames=True)
        if scheme == "s3":
            location = S3Location.from_url(url)
            root = f"{location.bucket}/{location.prefix}".rstrip("/")
            return cls(url, _s3_filesystem(location), root, S3Store(location), renames=False)
        if scheme in ("webhdfs", "swebhdfs"):
            from eventindex.store.webhdfs import webhdfs_warehouse

            fs, root, control = webhdfs_warehouse(url)
            return cls(url, fs, root, control, renames=True)
        raise ConfigError(f"warehouse URL {url!r}: scheme must be file://, s3://, webhdfs:// or swebhdfs://")

    def close(self) -> None:
        self.control.close()

    # ------------------------------------------------------------ paths

    def task_dir(self, dataset: str, task: str) -> str:
        """The task's partition directory (on `fs`)."""
        return f"{self.root}/{partition(dataset, task)}"

    def staging_dir(self, dataset: str, task: str) -> str:
        return f"{self.root}/{STAGING}/{partition(dataset, task)}"

    def location(self, dataset: str, task: str) -> str:
        """Where users find the task: a local path, or a URL."""
        path = self.task_dir(dataset, task)
        if isinstance(self.fs, pafs.LocalFileSystem):
            return path
        if isinstance(self.fs, pafs.S3FileSystem):
            return f"s3://{path}"
        base = self.url.split("?", 1)[0].rstrip("/")
        return f"{base}/{partition(dataset, task)}"

    def write_path(self, dataset: str, task: str, name: str) -> str:
        """Where a part is written while its load runs: staged where the filesystem renames."""
        if self.renames:
            return f"{self.staging_dir(dataset, task)}/{name}{STAGED_SUFFIX}"
        return f"{self.task_dir(dataset, task)}/{name}"

    # ------------------------------------------------------------ control objects

    def _read_json(self, key: str) -> dict[str, Any] | None:
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

    def _write_json_once(self, key: str, value: dict[str, Any]) -> None:
        data = json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"
        self.control.put(key, data)

    def read_marker(self, dataset: str, task: str) -> dict[str, Any] | None:
        return self._read_json(f"{partition(dataset, task)}/{MARKER}")

    def write_marker_once(self, dataset: str, task: str, marker: dict[str, Any]) -> None:
        """Write the commit marker unless one exists (AlreadyCommittedError then)."""
        try:
            self._write_json_once(f"{partition(dataset, task)}/{MARKER}", marker)
        except ObjectExistsError:
            raise AlreadyCommittedError(f"{self.location(dataset, task)} was committed already") from None
        except StoreError as exc:
            raise WarehouseError(f"cannot write the commit marker of {task}: {exc}") from exc

    def amendments(self, dataset: str, task: str) -> list[dict[str, Any]]:
        """The amendments of a committed task, in order."""
        found: list[dict[str, Any]] = []
        number = 1
        while (amendment := self._read_json(f"{partition(dataset, task)}/{AMEND_TEMPLATE.format(number)}")) is not None:
            found.append(amendment)
            number += 1
        return found

    def write_amendment_once(self, dataset: str, task: str, number: int, amendment: dict[str, Any]) -> None:
        """Write amendment `number` unless it exists (AlreadyCommittedError then)."""
        name = AMEND_TEMPLATE.format(number)
        try:
            self._write_json_once(f"{partition(dataset, task)}/{name}", amendment)
        except ObjectExistsError:
            raise AlreadyCommittedError(f"{self.location(dataset, task)}/{name} was written already") from None
        except StoreError as exc:
            raise WarehouseError(f"cannot write {name} of {task}: {exc}") from exc

    def claim(self, dataset: str, task: str, owner: str) -> None:
        """Take the load claim of a task, or confirm we hold it; ClaimedElsewhereError otherwise."""
        key = f"{STAGING}/{partition(dataset, task)}/{CLAIM}"
        claim = {"owner": owner, "claimed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            self._write_json_once(key, claim)
            return
        except ObjectExistsError:
            pass
        except StoreError as exc:
            raise WarehouseError(f"cannot write the load claim of {task}: {exc}") from exc
        held = self._read_json(key) or {}
        if held.get("owner") != owner:
            raise ClaimedElsewhereError(
                f"task {task} is being loaded by supersink {held.get('owner', '?')} "
                f"(claimed {held.get('claimed_at', '?')})"
            )

    def claim_path(self, dataset: str, task: str) -> str:
        """The claim file of a task, on `fs` (for operators releasing a lost supersink's claim)."""
        return f"{self.staging_dir(dataset, task)}/{CLAIM}"

    def committed(self, dataset: str, task: str) -> CommittedTask | None:
        marker = self.read_marker(dataset, task)
        if marker is None:
            return None
        return CommittedTask(dataset, task, self.task_dir(dataset, task), marker, self.amendments(dataset, task))

    def committed_tasks(self) -> Iterator[CommittedTask]:
        """Every committed task under the root, by dataset and task name."""
        for dataset in self._partition_values(self.root, DATASET_KEY):
            for task in self._partition_values(f"{self.root}/{DATASET_KEY}={dataset}", TASK_KEY):
                found = self.committed(dataset, task)
                if found is not None:
                    yield found

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

    # ------------------------------------------------------------ parts

    def begin(self, dataset: str, task: str, amendment: int = 0) -> None:
        """Make the directories a load writes into, and remove the temporaries an interrupted load of
        the same generation left in the staging area."""
        try:
            if self.renames:
                staging = self.staging_dir(dataset, task)
                self.fs.create_dir(staging, recursive=True)
                for info in self._list(staging):
                    name = info.base_name
                    if name.endswith(STAGED_SUFFIX) and _is_generation(name[: -len(STAGED_SUFFIX)], amendment):
                        self.fs.delete_file(info.path)
            else:
                self.fs.create_dir(self.task_dir(dataset, task), recursive=True)
        except OSError as exc:
            raise WarehouseError(f"cannot prepare {self.location(dataset, task)}: {exc}") from exc

    def _list(self, directory: str) -> list[pafs.FileInfo]:
        infos: list[pafs.FileInfo] = self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        return infos

    def sync(self, path: str) -> None:
        """Make a closed part durable before it is moved into place (local files: fsync)."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def parts(self, dataset: str, task: str) -> Iterator[str]:
        """The part files in the task's partition directory."""
        for info in self._list(self.task_dir(dataset, task)):
            if info.base_name.startswith("part-") and info.base_name.endswith(".parquet"):
                yield info.base_name

    def publish(self, dataset: str, task: str, names: list[str], amendment: int = 0) -> list[str]:
        """Put a generation's parts in place, remove the ones of the same generation a commit will not
        list, and return the removed names. Where the filesystem renames, the staged files are moved
        into the partition (a move left half-done by a crash is redone: the staged file wins)."""
        final = self.task_dir(dataset, task)
        try:
            if self.renames:
                self.fs.create_dir(final, recursive=True)
                for name in names:
                    staged = f"{self.staging_dir(dataset, task)}/{name}{STAGED_SUFFIX}"
                    target = f"{final}/{name}"
                    if self.fs.get_file_info(staged).type == pafs.FileType.NotFound:
                        if self.fs.get_file_info(target).type == pafs.FileType.File:
                            continue  # moved by the interrupted attempt this one repeats
                        raise WarehouseError(f"staged part {staged} is missing")
                    if self.fs.get_file_info(target).type != pafs.FileType.NotFound:
                        self.fs.delete_file(target)
                    self.fs.move(staged, target)
                self._sync_dir(final)
            keep = set(names)
            removed = []
            for name in list(self.parts(dataset, task)):
                if _is_generation(name, amendment) and name not in keep:
                    self.fs.delete_file(f"{final}/{name}")
                    removed.append(name)
            return removed
        except OSError as exc:
            raise WarehouseError(f"cannot move the parts of {task} into {self.location(dataset, task)}: {exc}") from exc

    def _sync_dir(self, directory: str) -> None:
        if isinstance(self.fs, pafs.LocalFileSystem):
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def write_side_file(self, dataset: str, task: str, name: str, value: dict[str, Any]) -> None:
        """A small JSON file next to the parts (deterministic content: a rerun rewrites it the same)."""
        path = f"{self.task_dir(dataset, task)}/{name}"
        data = json.dumps(value, indent=1, sort_keys=True).encode() + b"\n"
        try:
            self.fs.create_dir(self.task_dir(dataset, task), recursive=True)
            with self.fs.open_output_stream(path) as out:
                out.write(data)
        except OSError as exc:
            raise WarehouseError(f"cannot write {path}: {exc}") from exc

    def finish(self, dataset: str, task: str) -> None:
        """After a commit: remove what is left in the task's staging directory but its claim."""
        if not self.renames:
            return
        try:
            for info in self._list(self.staging_dir(dataset, task)):
                if info.base_name != CLAIM:
                    self.fs.delete_file(info.path)
        except OSError:
            pass  # temporaries only; the next load of this task removes them too
