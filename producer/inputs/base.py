"""The interface every input reader implements, and the `--input` spec parser."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import pyarrow as pa

from eventindex.errors import InputError


class InputSource(ABC):
    """One input file of a job."""

    #: A name for messages and the manifest (a path, or the synthetic spec).
    name: str
    #: The file's GUID (uppercase 8-4-4-4-12).
    guid: str

    @property
    def declared_events(self) -> int | None:
        """The event count the file itself declares, when it declares one."""
        return None

    @abstractmethod
    def batches(self, max_rows: int) -> Iterator[pa.Table]:
        """Yield the file's events in order, at most `max_rows` per table."""


def open_input(spec: str) -> InputSource:
    """Parse one `--input` value: `synthetic:EVENTS[:SEED]`."""
    kind, sep, rest = spec.partition(":")
    if sep and kind == "synthetic":
        from producer.inputs.synthetic import SyntheticInput

        return SyntheticInput.from_spec(rest)
    raise InputError(f"input {spec!r}: unknown input kind (expected synthetic:EVENTS[:SEED])")
