"""The interface every input reader implements, and the `--input` spec parser."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import pyarrow as pa

from eventindex.errors import InputError


class InputSource(ABC):
    """One input file of a job."""

    #: A name for messages and the manifest (a path, or the synthetic spec).
    name: str
    #: The file's GUID (uppercase 8-4-4-4-12).
    guid: str
    #: How the file was read, where a reader of the index should know (a fallback taken); for the manifest.
    notes: Sequence[str] = ()
    #: Trigger masks built from named boolean fields: column -> the field behind each bit; for the manifest.
    trigger_names: Mapping[str, Sequence[str]] = MappingProxyType({})

    @property
    def declared_events(self) -> int | None:
        """The event count the file itself declares, when it declares one."""
        return None

    @abstractmethod
    def batches(self, max_rows: int) -> Iterator[pa.Table]:
        """Yield the file's events in order, at most `max_rows` per table (EVENT_SCHEMA).

        Raises InputError naming the file and the record when the file is unreadable,
        truncated or inconsistent.
        """


#: File name endings and the reader that takes them.
SUFFIXES = {
    ".ei.spb": "spb",
    ".spb": "spb",
    ".root": "root",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def input_kind(spec: str) -> tuple[str, str]:
    """(kind, rest) of an `--input` value: `KIND:REST`, or a path whose ending names the kind."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("synthetic", "spb", "root", "parquet", "jsonl"):
        return kind, rest
    for suffix, suffix_kind in SUFFIXES.items():
        if spec.lower().endswith(suffix):
            return suffix_kind, spec
    raise InputError(
        f"input {spec!r}: unknown input kind (expected synthetic:EVENTS[:SEED], or a file ending in "
        f"{', '.join(SUFFIXES)}, or KIND:PATH with KIND one of spb, root, parquet, jsonl)"
    )


def open_input(spec: str, branch_map: Path | None = None, check_counts: bool = True) -> InputSource:
    """Open one `--input` value. `check_counts=False` (--allow-mismatch) lets a file whose declared
    counts disagree with its records be read (the manifest records the mismatch)."""
    kind, rest = input_kind(spec)
    if kind == "synthetic":
        from producer.inputs.synthetic import SyntheticInput

        return SyntheticInput.from_spec(rest)
    path = Path(rest)
    if path.is_dir():
        raise InputError(f"input {rest}: a directory, not a file (give each file of it as an --input of its own)")
    if not path.is_file():
        if path.is_symlink():
            raise InputError(f"input {rest}: a symbolic link to {os.readlink(path)}, which does not exist")
        if path.exists():  # a FIFO, a device, a socket: an input is read more than once, from a known size
            raise InputError(f"input {rest}: not a regular file")
        raise InputError(f"input {rest}: no such file")
    if kind == "spb":
        from producer.inputs.spb import SpbInput

        return SpbInput(path, check_counts=check_counts)
    if kind == "root":
        from producer.inputs.root import RootInput

        return RootInput(path, branch_map)
    if kind == "parquet":
        from producer.inputs.parquet import ParquetInput

        return ParquetInput(path)
    from producer.inputs.jsonl import JsonLinesInput

    return JsonLinesInput(path)
