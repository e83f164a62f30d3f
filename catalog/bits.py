"""`--bits MASK:BIT[,MASK:BIT…]`: trigger bits by number, or by name where the commit recorded the names.

A commit marker (and an amendment) may carry `"trigger_names": {"<mask column>": ["name of bit 0",
…]}` (null or "" for a bit without a name). A name is resolved task by task, as menus differ
between runs: the bit it names in each task's list; in a task whose list lacks it, it is counted as
never set (the trigger was not in that menu). A name no task of the datasets knows, or a task that
records no names for the mask, is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from catalog.errors import QueryError
from catalog.index import FileEntry
from eventindex.columns import MASK_COLUMNS

MASK_BITS = {name: width * 8 for name, width in MASK_COLUMNS}


@dataclass(frozen=True)
class BitSpec:
    label: str  # as the user wrote it
    mask: str
    number: int | None  # a bit number, or
    name: str | None  # a trigger name


def parse_bits(text: str) -> list[BitSpec]:
    specs = []
    for item in text.split(","):
        label = item.strip()
        mask, sep, bit = label.partition(":")
        mask, bit = mask.strip(), bit.strip()
        if not sep or not bit:
            raise QueryError(f"--bits {label!r}: expected MASK:BIT (a bit number or a trigger name)")
        if mask not in MASK_BITS:
            raise QueryError(f"--bits {label!r}: unknown mask {mask!r} (one of {', '.join(MASK_BITS)})")
        if bit.isdigit():
            number = int(bit)
            if number >= MASK_BITS[mask]:
                raise QueryError(
                    f"--bits {label!r}: bit {number} is out of range for {mask} (0..{MASK_BITS[mask] - 1})"
                )
            specs.append(BitSpec(label, mask, number, None))
        else:
            specs.append(BitSpec(label, mask, None, bit))
    return specs


Positions = tuple[tuple[str, int] | None, ...]


class NameResolver:
    """Bit numbers of trigger names, per task generation (the name lists are read once each)."""

    def __init__(self, names: Callable[[str], list[str | None]]) -> None:
        self._names = names
        self._maps: dict[str, dict[str, int]] = {}

    def _map(self, digest: str) -> dict[str, int]:
        if digest not in self._maps:
            found: dict[str, int] = {}
            for position, name in enumerate(self._names(digest)):
                if name and name not in found:
                    found[name] = position
            self._maps[digest] = found
        return self._maps[digest]

    def names_of(self, entry: FileEntry, mask: str) -> dict[str, int] | None:
        """The name -> bit map of a file's generation for a mask (the first load's when the amendment has none)."""
        generations = entry.task.generations
        for generation in (generations[entry.generation], generations[0]):
            digest = generation.trigger_names.get(mask)
            if digest is not None:
                return self._map(digest)
        return None

    def positions(self, specs: Sequence[BitSpec], entry: FileEntry) -> Positions:
        """Each spec's (mask, bit) in this file (None: a name its menu lacks)."""
        result: list[tuple[str, int] | None] = []
        for spec in specs:
            if spec.number is not None:
                result.append((spec.mask, spec.number))
                continue
            names = self.names_of(entry, spec.mask)
            if names is None:
                task = entry.task
                raise QueryError(
                    f"--bits {spec.label!r}: task {task.task} of {task.dataset} records no trigger names for "
                    f"{spec.mask}; give the bit number"
                )
            position = names.get(spec.name or "")
            result.append(None if position is None else (spec.mask, position))
        return tuple(result)

    def check_known(self, specs: Sequence[BitSpec], entries: Sequence[FileEntry]) -> None:
        """Every name is known to at least one of these files' tasks."""
        for spec in specs:
            if spec.name is None:
                continue
            known = [self.names_of(e, spec.mask) for e in entries]
            if all(names is None for names in known):
                raise QueryError(f"--bits {spec.label!r}: no task of the datasets records {spec.mask} trigger names")
            if not any(spec.name in names for names in known if names is not None):
                raise QueryError(
                    f"--bits {spec.label!r}: no task of the datasets names a {spec.mask} bit {spec.name!r}"
                )
