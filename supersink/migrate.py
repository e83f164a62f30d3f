"""`ei-supersink migrate-layout`: move a warehouse written as `<dataset>/<task>/` to `dataset=<D>/task=<T>/`.

Warehouses written before the Hive-style layout keep each task in `<root>/<dataset>/<task>/`.
This moves every committed task (a directory with `_SUCCESS.json`) to its partition directory:
parts first, then the marker last, so a reader of the new tree sees a task only once it is whole.
Tasks without a marker (loads that never committed) are left where they are and reported; their
claims mean nothing in the new layout, and their jobs load again into the new layout when the
supersink next settles them. Run it with the supersinks of that warehouse stopped. It is
idempotent: a rerun after an interruption finishes the moves it started.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.fs as pafs

from eventindex.errors import ConfigError, WarehouseError
from eventindex.names import validate_name
from eventindex.warehouse import CLAIM, MARKER
from supersink.warehouse import Warehouse


@dataclass
class Migration:
    moved: list[str] = field(default_factory=list)  # dataset/task
    uncommitted: list[str] = field(default_factory=list)  # old directories without a marker, left alone


def _dirs(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    infos: list[pafs.FileInfo] = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return [i for i in infos if i.type == pafs.FileType.Directory]


def _move(warehouse: Warehouse, source: str, target: str) -> None:
    fs = warehouse.fs
    if fs.get_file_info(target).type != pafs.FileType.NotFound:
        fs.delete_file(target)
    if warehouse.renames:
        fs.move(source, target)
    else:  # S3: copy, then delete the old object
        fs.copy_file(source, target)
        fs.delete_file(source)


def migrate_layout(warehouse: Warehouse) -> Migration:
    """Move each committed `<dataset>/<task>/` of an old-layout warehouse into its partition."""
    result = Migration()
    fs = warehouse.fs
    try:
        for dataset_dir in _dirs(fs, warehouse.root):
            dataset = dataset_dir.base_name
            if "=" in dataset or dataset.startswith(("_", ".")):
                continue  # the new layout, or the staging area
            try:
                validate_name("dataset", dataset)
            except ConfigError:
                continue
            for task_dir in _dirs(fs, dataset_dir.path):
                task = task_dir.base_name
                try:
                    validate_name("task", task)
                except ConfigError:
                    continue
                names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(task_dir.path))]
                if MARKER not in names:
                    if names:
                        result.uncommitted.append(f"{dataset}/{task}")
                    continue
                target = warehouse.task_dir(dataset, task)
                fs.create_dir(target, recursive=True)
                for name in sorted(names):
                    if name not in (MARKER, CLAIM):
                        _move(warehouse, f"{task_dir.path}/{name}", f"{target}/{name}")
                if CLAIM in names:
                    fs.create_dir(warehouse.staging_dir(dataset, task), recursive=True)
                    _move(warehouse, f"{task_dir.path}/{CLAIM}", warehouse.claim_path(dataset, task))
                _move(warehouse, f"{task_dir.path}/{MARKER}", f"{target}/{MARKER}")
                if warehouse.renames:
                    fs.delete_dir(task_dir.path)
                result.moved.append(f"{dataset}/{task}")
            if warehouse.renames and not fs.get_file_info(pafs.FileSelector(dataset_dir.path)):
                fs.delete_dir(dataset_dir.path)
    except OSError as exc:
        raise WarehouseError(f"migrating {warehouse.url}: {exc}") from exc
    return result
