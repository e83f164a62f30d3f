"""`--bits MASK:BIT[,MASK:BIT…]`: trigger bits by number, or by name where the commit recorded the names.

A commit marker (and an amendment) may carry `"trigger_names": {"<mask column>": ["name of bit 0",
…]}` (null or "" for a bit without a name), or, when its input files disagree, `"trigger_name_sets":
[{"column", "names", "input_guids"}]`: each list with the input files whose rows it names. A name is
resolved task by task and, with name sets, input file by input file, as menus differ between runs:
the bit it names in each list; where the list lacks it (or no list names the rows' input file) it is
counted as never set (the trigger was not in that menu). A name no task of the datasets knows, or a
task that records no names for the mask, is refused. An amendment without names takes its task's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from catalog.errors import QueryError
from catalog.index import FileEntry, Generation
from eventindex.columns import MASK_COLUMNS

MASK_BITS = {name: width * 8 for name, width in MASK_COLUMNS}
#: A bit number: ASCII digits only (str.isdigit takes other scripts' digits and superscripts, which int() reads
#: as another number or refuses).
_NUMBER = re.compile(r"[+-]?[0-9]+")


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
        if _NUMBER.fullmatch(bit):  # a number, a signed one too (never a name)
            number = int(bit)
            if not 0 <= number < MASK_BITS[mask]:
                raise QueryError(
                    f"--bits {label!r}: bit {number} is out of range for {mask} (0..{MASK_BITS[mask] - 1})"
                )
            specs.append(BitSpec(label, mask, number, None))
        elif bit.lstrip("+-").isnumeric():  # digits of another script, superscripts: not a bit number
            raise QueryError(f"--bits {label!r}: a bit number is written in the digits 0-9")
        else:
            specs.append(BitSpec(label, mask, None, bit))
    return specs


Positions = tuple[tuple[str, int] | None, ...]


@dataclass(frozen=True)
class Rows:
    """Which rows of a file a slice covers: those whose input file is (`negate`: is not) one of `guids`;
    None for every row."""

    guids: tuple[str, ...]
    negate: bool


Slice = tuple[Positions, Rows | None]


class NameResolver:
    """Bit numbers of trigger names, per task generation and input file (the name lists are read once each)."""

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

    @staticmethod
    def _generation(entry: FileEntry, mask: str) -> Generation | None:
        """The generation whose names a file's rows take: its own, or the first load's when it has none."""
        generations = entry.task.generations
        for generation in (generations[entry.generation], generations[0]):
            if generation.names_mask(mask):
                return generation
        return None

    def known_names(self, entry: FileEntry, mask: str) -> set[str] | None:
        """Every name a file's rows may give a mask's bits (None: no name list at all)."""
        generation = self._generation(entry, mask)
        if generation is None:
            return None
        digests = [generation.trigger_names[mask]] if mask in generation.trigger_names else []
        digests += [name_set.digest for name_set in generation.trigger_name_sets.get(mask, [])]
        return {name for digest in digests for name in self._map(digest)}

    def slices(self, specs: Sequence[BitSpec], entry: FileEntry) -> list[Slice]:
        """Each spec's (mask, bit) in this file's rows (None: a name their menu lacks), with the rows they
        hold for: all of them, or (when input files disagree on the names) the rows of some input files."""
        plain: dict[str, dict[str, int]] = {}
        by_file: dict[str, list[tuple[dict[str, int], tuple[str, ...]]]] = {}
        for spec in specs:
            if spec.name is None or spec.mask in plain or spec.mask in by_file:
                continue
            generation = self._generation(entry, spec.mask)
            if generation is None:
                task = entry.task
                raise QueryError(
                    f"--bits {spec.label!r}: task {task.task} of {task.dataset} records no trigger names for "
                    f"{spec.mask}; give the bit number"
                )
            if spec.mask in generation.trigger_names:
                plain[spec.mask] = self._map(generation.trigger_names[spec.mask])
            else:
                by_file[spec.mask] = [
                    (self._map(n.digest), n.input_guids) for n in generation.trigger_name_sets[spec.mask]
                ]

        def positions(maps: dict[str, dict[str, int] | None]) -> Positions:
            result: list[tuple[str, int] | None] = []
            for spec in specs:
                if spec.number is not None:
                    result.append((spec.mask, spec.number))
                    continue
                names = maps.get(spec.mask)
                position = names.get(spec.name or "") if names is not None else None
                result.append(None if position is None else (spec.mask, position))
            return tuple(result)

        if not by_file:
            return [(positions(dict(plain)), None)]
        # Input files that take the same list for every mask form one slice; files no list names, another.
        masks = sorted(by_file)
        signature: dict[str, list[int]] = {}
        for k, mask in enumerate(masks):
            for index, (_, guids) in enumerate(by_file[mask]):
                for guid in guids:
                    signature.setdefault(guid, [-1] * len(masks))[k] = index
        groups: dict[tuple[int, ...], list[str]] = {}
        for guid, indexes in signature.items():
            groups.setdefault(tuple(indexes), []).append(guid)
        result: list[Slice] = []
        for choice, members in sorted(groups.items()):
            maps: dict[str, dict[str, int] | None] = {**plain}
            maps.update({mask: by_file[mask][i][0] if i >= 0 else None for mask, i in zip(masks, choice, strict=True)})
            result.append((positions(maps), Rows(tuple(sorted(members)), negate=False)))
        result.append((positions({**plain, **dict.fromkeys(masks)}), Rows(tuple(sorted(signature)), negate=True)))
        return result

    def check_known(self, specs: Sequence[BitSpec], entries: Sequence[FileEntry]) -> None:
        """Every name is known to at least one of these files' tasks."""
        for spec in specs:
            if spec.name is None:
                continue
            known = [self.known_names(e, spec.mask) for e in entries]
            if all(names is None for names in known):
                raise QueryError(f"--bits {spec.label!r}: no task of the datasets records {spec.mask} trigger names")
            if not any(spec.name in names for names in known if names is not None):
                raise QueryError(
                    f"--bits {spec.label!r}: no task of the datasets names a {spec.mask} bit {spec.name!r}"
                )
