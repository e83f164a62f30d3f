"""The classes the ROOT reader hands uproot (producer.inputs.root.CLASSES): TAttMarker version 3.

Recent ROOT writes TTrees with TAttMarker version 3, whose members are those of version 2; the
reader reads it as version 2 instead of having uproot read the file's streamers. The real ATLAS
PHYSLITE file of tests/data/root is such a file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import uproot  # type: ignore[import-untyped]

from producer.inputs.root import CLASSES, LINKS_TREE, PARAMS_TREE

DATA = Path(__file__).resolve().parents[1] / "data" / "root"
PHYSLITE = DATA / "uproot-physlite-rntuple_v1-0-0-0.root"
RUN3 = DATA / "uproot-issue-951.root"


def test_version_3_has_the_members_of_version_2() -> None:
    """What the file's own streamer says version 3 holds is what the version 2 model reads."""
    with uproot.open(PHYSLITE) as file:
        streamer = file.file.streamer_named("TAttMarker", 3)
        members = [(element.name, element.typename) for element in streamer.elements]
    assert members == [("fMarkerColor", "short"), ("fMarkerStyle", "short"), ("fMarkerSize", "float")]
    read = uproot.models.TAtt.Model_TAttMarker_v2.strided_interpretation(None).members
    assert [(name, dtype.str) for name, dtype in read] == [
        ("fMarkerColor", ">i2"),
        ("fMarkerStyle", ">i2"),
        ("fMarkerSize", ">f4"),
    ]


@pytest.mark.parametrize("path", [PHYSLITE, RUN3], ids=["physlite-rntuple", "run3-ttree"])
def test_pool_trees_read_as_uproot_reads_them_without_the_streamers(path: Path) -> None:
    with uproot.open(path) as plain, uproot.open(path, custom_classes=CLASSES) as ours:
        pool = ("##", "POOLCollectionTree")
        names = sorted({key.split(";")[0] for key in plain.keys(cycle=True) if key.startswith(pool)})
        assert PARAMS_TREE in names and LINKS_TREE in names
        for name in names:
            theirs, mine = plain[name], ours[name]
            for member in ("fMarkerColor", "fMarkerStyle", "fMarkerSize", "fEntries", "fName"):
                assert mine.member(member) == theirs.member(member), (name, member)
            assert mine.keys(recursive=True) == theirs.keys(recursive=True)
            for key in mine.keys(recursive=True):
                assert mine[key].array(library="np").tolist() == theirs[key].array(library="np").tolist()
        assert ours.file._streamers is None  # nothing needed them
