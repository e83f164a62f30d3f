"""The supersink's side of the warehouse: claims, staged parts, commit markers and amendments.

The layout and the reading rule are in eventindex.warehouse. What a load may leave visible is
decided here:

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
- `_staging/dataset=<D>/task=<T>/_CLAIM-aNNNN.json`: which supersink writes amendment NNNN of a
  committed task. A claim of its own per amendment, not the task's: the supersink that committed the
  task may be gone for good (its ledger lost, its identity with it), and the late jobs must still be
  loadable by another; two amending at once still cannot both write amendment NNNN.
- `dataset=<D>/task=<T>/_SUCCESS.json` and `_AMEND-NNNN.json`: the commit marker and the
  amendments, written once, last.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pyarrow.fs as pafs

from eventindex.errors import AlreadyCommittedError, ConfigError, ObjectExistsError, StoreError, WarehouseError
from eventindex.warehouse import (
    AMEND_TEMPLATE,
    CLAIM,
    MARKER,
    STAGING,
    WarehouseReader,
    partition,
)

STAGED_SUFFIX = ".staged"
#: The claim of amendment NNNN of a committed task (the first load's is CLAIM).
AMEND_CLAIM_TEMPLATE = "_CLAIM-a{:04d}.json"


class ClaimedElsewhereError(WarehouseError):
    """Another supersink holds the load claim of this task."""


def _claim_name(amendment: int) -> str:
    return CLAIM if amendment == 0 else AMEND_CLAIM_TEMPLATE.format(amendment)


def _is_claim(name: str) -> bool:
    prefix, _, suffix = AMEND_CLAIM_TEMPLATE.partition("{:04d}")
    return name == CLAIM or (
        name.startswith(prefix) and name.endswith(suffix) and name[len(prefix) : -len(suffix)].isdigit()
    )


def _part_prefix(amendment: int) -> str:
    return "part-" if amendment == 0 else f"part-a{amendment:04d}-"


def _is_generation(name: str, amendment: int) -> bool:
    """Whether a part file name belongs to the first load (0) or to amendment `amendment`."""
    if amendment == 0:
        return re.fullmatch(r"part-\d{5}\.parquet", name) is not None
    return name.startswith(_part_prefix(amendment)) and name.endswith(".parquet")


class Warehouse(WarehouseReader):
    """A warehouse the supersink writes: everything a reader has, plus claims, staging and commits."""

    CREATES = True

    def staging_dir(self, dataset: str, task: str) -> str:
        return f"{self.root}/{STAGING}/{partition(dataset, task)}"

    def write_path(self, dataset: str, task: str, name: str) -> str:
        """Where a part is written while its load runs: staged where the filesystem renames."""
        if self.renames:
            return f"{self.staging_dir(dataset, task)}/{name}{STAGED_SUFFIX}"
        return f"{self.task_dir(dataset, task)}/{name}"

    def _write_json_once(self, key: str, value: dict[str, Any]) -> None:
        data = json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"
        self.control.put(key, data)

    def write_marker_once(self, dataset: str, task: str, marker: dict[str, Any]) -> None:
        """Write the commit marker unless one exists (AlreadyCommittedError then)."""
        try:
            self._write_json_once(f"{partition(dataset, task)}/{MARKER}", marker)
        except ObjectExistsError:
            raise AlreadyCommittedError(f"{self.location(dataset, task)} was committed already") from None
        except StoreError as exc:
            raise WarehouseError(f"cannot write the commit marker of {task}: {exc}") from exc

    def write_amendment_once(self, dataset: str, task: str, number: int, amendment: dict[str, Any]) -> None:
        """Write amendment `number` unless it exists (AlreadyCommittedError then)."""
        name = AMEND_TEMPLATE.format(number)
        try:
            self._write_json_once(f"{partition(dataset, task)}/{name}", amendment)
        except ObjectExistsError:
            raise AlreadyCommittedError(f"{self.location(dataset, task)}/{name} was written already") from None
        except StoreError as exc:
            raise WarehouseError(f"cannot write {name} of {task}: {exc}") from exc

    def claim(self, dataset: str, task: str, owner: str, amendment: int = 0) -> None:
        """Take the load claim of a task (`amendment` 0) or of one of its amendments, or confirm we hold it;
        ClaimedElsewhereError otherwise."""
        key = f"{STAGING}/{partition(dataset, task)}/{_claim_name(amendment)}"
        claim = {"owner": owner, "claimed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            self._write_json_once(key, claim)
            return
        except ObjectExistsError:
            held = self._read_json(key) or {}
        except StoreError as exc:  # a full disk, say: a claim already there (ours, from the try before) will do
            try:
                found = self._read_json(key)
            except WarehouseError:
                found = None
            if found is None:
                raise WarehouseError(f"cannot write the load claim of {task}: {exc}") from exc
            held = found
        if held.get("owner") != owner:
            what = "loaded" if amendment == 0 else f"amended (amendment {amendment})"
            raise ClaimedElsewhereError(
                f"task {task} is being {what} by supersink {held.get('owner', '?')} "
                f"(claimed {held.get('claimed_at', '?')})"
            )

    def holds_no_commit(self, task: str, location: str | None) -> ConfigError:
        """The error for a task the ledger says was loaded (to `location`) that this warehouse holds no commit
        of: the wrong --warehouse, or a marker deleted or not restored."""
        return ConfigError(
            f"task {task} was loaded to {location or '?'}, but {self.url.split('?', 1)[0]} holds no commit of it: "
            "is this the warehouse it was loaded to?"
        )

    def claim_path(self, dataset: str, task: str, amendment: int = 0) -> str:
        """The claim file of a task (or of an amendment), on `fs` (for operators releasing a lost supersink's claim)."""
        return f"{self.staging_dir(dataset, task)}/{_claim_name(amendment)}"

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
        """Make a closed part (or a directory's entries) durable before what follows (local files: fsync)."""
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
                self.sync(final)
            keep = set(names)
            removed = []
            for name in list(self.parts(dataset, task)):
                if _is_generation(name, amendment) and name not in keep:
                    self.fs.delete_file(f"{final}/{name}")
                    removed.append(name)
            return removed
        except OSError as exc:
            raise WarehouseError(f"cannot move the parts of {task} into {self.location(dataset, task)}: {exc}") from exc

    def unpublish(self, dataset: str, task: str, names: list[str]) -> None:
        """Move a generation's parts back under staging after its commit failed (where the filesystem
        renames), so that the partition tree holds committed data only while the failure lasts: a full
        disk or an HDFS quota refusing the marker would show them to every reader pointed at the root.
        Best effort: what cannot be moved back stays, as after a crash between the moves and the marker."""
        if not self.renames:
            return
        final = self.task_dir(dataset, task)
        for name in names:
            try:
                self.fs.move(f"{final}/{name}", f"{self.staging_dir(dataset, task)}/{name}{STAGED_SUFFIX}")
            except OSError:
                continue

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
        """After a commit: remove what is left in the task's staging directory but its claims."""
        if not self.renames:
            return
        try:
            for info in self._list(self.staging_dir(dataset, task)):
                if not _is_claim(info.base_name):
                    self.fs.delete_file(info.path)
        except OSError:
            pass  # temporaries only; the next load of this task removes them too
