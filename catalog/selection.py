"""Which committed files a question must read: datasets by glob, then pruning with the index.

Pruning works on row groups (the index's key, run and lumi ranges) and keeps a file when any of its
row groups may hold a wanted row; the engines then read those files with the same conditions
pushed down, and skip the other row groups by the same footer statistics.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from catalog.errors import CatalogIndexError, QueryError
from catalog.index import DamagedTask, FileEntry, IndexView

_NUMBER = re.compile(r"\s*[0-9]+\s*")


@dataclass(frozen=True)
class Range:
    """An inclusive integer range, from `A-B` (or `A` alone)."""

    low: int
    high: int

    @classmethod
    def parse(cls, text: str, what: str) -> Range:
        parts = text.split("-")
        try:
            if not all(_NUMBER.fullmatch(part) for part in parts):  # int() takes other scripts' digits too
                raise ValueError
            if len(parts) == 1:
                low = high = int(parts[0])
            elif len(parts) == 2:
                low, high = int(parts[0]), int(parts[1])
            else:
                raise ValueError
        except ValueError:
            raise QueryError(f"{what} {text!r}: expected A-B (or A) with non-negative integers") from None
        if low < 0 or high < low:
            raise QueryError(f"{what} {text!r}: expected A-B with 0 <= A <= B")
        return cls(low, high)


def match_datasets(view: IndexView, globs: Sequence[str]) -> list[str]:
    """The indexed datasets matching any glob; QueryError when a glob matches none, CatalogIndexError when one of
    them holds a damaged task (:func:`refuse_damaged`)."""
    known = sorted({*view.datasets(), *(damaged.dataset for damaged in view.damaged)})
    if not known:
        raise QueryError(
            "the warehouse holds no committed task (is the URL the warehouse's root, the directory of the "
            "dataset=... partitions?)"
        )
    chosen: set[str] = set()
    for glob in globs:
        found = [d for d in known if fnmatch.fnmatchcase(d, glob)]
        if not found:
            raise QueryError(f"dataset {glob!r}: no committed task in a dataset of that name")
        chosen.update(found)
    refuse_damaged(view.damaged, chosen)
    return sorted(chosen)


def refuse_damaged(damaged: Sequence[DamagedTask], datasets: Iterable[str]) -> None:
    """A question over datasets holding a committed task the index could not read (its marker not a commit record,
    a listed part file missing or unreadable) is not answered: CatalogIndexError naming the task and why. Its
    rows would be missing from the answer, which would look whole. Damaged tasks of other datasets do not matter."""
    wanted = set(datasets)
    inside = [each for each in damaged if each.dataset in wanted]
    if inside:
        first = inside[0]
        more = f" (and {len(inside) - 1} more damaged task{'s' if len(inside) > 2 else ''})" if len(inside) > 1 else ""
        raise CatalogIndexError(
            f"task {first.task} of {first.dataset} cannot be read, so no answer over {first.dataset} would be whole: "
            f"{first.reason}{more}"
        )


def _file_mask(view: IndexView, datasets: Sequence[str]) -> np.ndarray:
    wanted = set(datasets)
    return np.array([f.task.dataset in wanted for f in view.files], dtype=bool)


def _files(view: IndexView, datasets: Sequence[str], row_groups: np.ndarray) -> list[FileEntry]:
    """The files of `datasets` with at least one row group selected."""
    chosen = np.zeros(len(view.files), dtype=bool)
    chosen[view.rg_file[row_groups]] = True
    chosen &= _file_mask(view, datasets)
    return [view.files[i] for i in np.flatnonzero(chosen)]


def files_with_rows(
    view: IndexView, datasets: Sequence[str], runs: Range | None, lumi: Range | None
) -> list[FileEntry]:
    """Files that may hold rows of the run and lumi-block ranges."""
    keep = view.rg_rows > 0
    if runs is not None:
        keep &= (view.rg_max_run >= runs.low) & (view.rg_min_run <= runs.high)
    if lumi is not None:
        keep &= (view.rg_max_lumi >= lumi.low) & (view.rg_min_lumi <= lumi.high)
    return _files(view, datasets, keep)


def files_with_keys(view: IndexView, datasets: Sequence[str], keys: np.ndarray) -> list[FileEntry]:
    """Files with a row group whose key range holds one of `keys` (packed, sorted)."""
    first = np.searchsorted(keys, view.rg_lo, side="left")
    last = np.searchsorted(keys, view.rg_hi, side="right")
    return _files(view, datasets, (last > first) & (view.rg_rows > 0))


def files_sharing_keys(view: IndexView, datasets: Sequence[str], keys: np.ndarray) -> list[FileEntry]:
    """Files that may hold a key another task holds too (their row groups' key ranges overlap one of
    another task), or one of `keys` (packed, sorted). A task never holds a key twice (the loader
    keeps one copy), so a key held twice is in two tasks' overlapping row groups."""
    in_datasets = _file_mask(view, datasets)[view.rg_file] & (view.rg_rows > 0)
    candidates = np.flatnonzero(in_datasets)
    task_number = {id(task): n for n, task in enumerate(view.tasks)}
    task_of = np.array([task_number[id(view.files[i].task)] for i in view.rg_file[candidates]], dtype=np.int64)
    order = np.argsort(view.rg_lo[candidates], kind="stable")
    lo, hi, owner = view.rg_lo[candidates][order], view.rg_hi[candidates][order], task_of[order]
    shared = np.zeros(len(order), dtype=bool)
    # Row groups sorted by their low key: group i overlaps the following ones whose low key is <= its high key.
    ends = np.searchsorted(lo, hi, side="right")
    for i in range(len(order)):
        others = owner[i + 1 : ends[i]] != owner[i]
        if others.any():
            shared[i] = True
            shared[i + 1 + np.flatnonzero(others)] = True
    keep = np.zeros(len(view.rg_file), dtype=bool)
    keep[candidates[order[shared]]] = True
    if len(keys):
        first = np.searchsorted(keys, view.rg_lo, side="left")
        last = np.searchsorted(keys, view.rg_hi, side="right")
        keep |= (last > first) & in_datasets
    return _files(view, datasets, keep)
