"""A warehouse for the catalogue tests, built by the real pipeline (producer, supersink, amend), and the
events it must hold, from the producer's synthetic inputs themselves (never read back from it).

Datasets and tasks (row groups of 300 rows, files of 900, so tasks span several files and row groups):
- dsA/t1: jobs j1 (seed 1) and j2 (seed 2);          dsA/t2: j1 (seed 3)
- dsA/t3: j1 (seed 4) force-loaded as partial, then j2 (seed 5) amended in
- dsA/t4: j1 (seed 8) of 2 jobs, force-loaded: partial for good
- dsA/t5: j1 (seed 1): the events of t1/j1 again, duplicates across tasks
- dsA/t6: j1 and j2 both index seed 6: duplicates within a task, loaded once and listed in _DUPLICATES.json
- dsB/t7: j1 (seed 2: the events of t1/j2 again, in another dataset) and j2 (seed 1001: another run)
Next to them, never committed: dsA/tU (a load that died: its claim and staged parts in `_staging`,
seed 9) and dsA/tV (parts in place without a marker, as on S3 before a commit, seed 10).

Trigger names are written into the markers (as a commit records them): the dsA tasks name the L1
items `L1_ITEM_<bit>` one bit further on (`trigger_names`, a later menu), except t1, whose lists
differ by input file (`trigger_name_sets`): j1's file names the items at their bits, a file without
rows names them one bit further on, and j2's file is in no list (its rows have no names); dsB names
none.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eventindex.columns import WAREHOUSE_SCHEMA
from eventindex.transport import open_consumer, open_publisher
from eventindex.warehouse import MARKER
from producer.inputs.synthetic import L1_POOL, SyntheticInput
from producer.job import JobRunner, JobSpec
from supersink.amend import amend
from supersink.ledger import Ledger
from supersink.loader import FileLayout
from supersink.service import Supersink
from supersink.warehouse import Warehouse
from tests.helpers import SORT, Pipeline

LAYOUT = FileLayout(row_group_rows=300, rows_per_file=900)
EVENTS = {1: 1_500, 2: 1_500, 3: 1_200, 4: 900, 5: 900, 6: 250, 8: 700, 9: 500, 10: 500, 1001: 800}


@dataclass(frozen=True)
class Job:
    dataset: str
    task: str
    job: str
    seed: int
    attempt: int = 1


COMMITTED = [
    Job("dsA", "t1", "j1", 1),
    Job("dsA", "t1", "j2", 2),
    Job("dsA", "t2", "j1", 3),
    Job("dsA", "t3", "j1", 4),
    Job("dsA", "t3", "j2", 5),
    Job("dsA", "t4", "j1", 8),
    Job("dsA", "t5", "j1", 1),
    Job("dsA", "t6", "j1", 6),
    Job("dsA", "t6", "j2", 6),
    Job("dsB", "t7", "j1", 2),
    Job("dsB", "t7", "j2", 1001),
]


def names_first() -> list[str | None]:
    names: list[str | None] = [None] * 512
    for bit in L1_POOL.tolist():
        names[bit] = f"L1_ITEM_{bit}"
    return names


def names_shifted() -> list[str | None]:
    """The same names one bit further on (a later menu)."""
    return [None, *names_first()[:-1]]


@dataclass
class CatalogCase:
    url: str
    root: Path  # the pipeline's work directory
    warehouse: Warehouse
    trigger_names: dict[tuple[str, str, str], list[str | None]] = field(default_factory=dict)

    def events(self) -> pa.Table:
        """Every committed row as the warehouse must hold it (dataset, task, job, attempt and the event
        columns), from the synthetic inputs; within a task, a duplicated event is held once (job j1's)."""
        tables = []
        seen: set[tuple[str, str, int]] = set()
        for job in COMMITTED:
            if (job.dataset, job.task, job.seed) in seen:
                continue  # t6/j2: the loader keeps j1's copy of each event
            seen.add((job.dataset, job.task, job.seed))
            table = synthetic_events(job.seed)
            n = table.num_rows
            tables.append(
                table.append_column("dataset", pa.array([job.dataset] * n))
                .append_column("task", pa.array([job.task] * n))
                .append_column("job", pa.array([job.job] * n))
                .append_column("attempt", pa.array(np.full(n, job.attempt, np.int32)))
            )
        return pa.concat_tables(tables).sort_by([*SORT, ("dataset", "ascending"), ("task", "ascending")])

    def dropped(self) -> list[dict[str, Any]]:
        """The copies the loader dropped: t6/j2's, one per event of seed 6."""
        table = synthetic_events(6)
        guid = SyntheticInput(EVENTS[6], 6).guid
        keys = zip(
            table.column("run_number").to_pylist(), table.column("event_number").to_pylist(),
            table.column("lumi_block").to_pylist(), strict=True,
        )  # fmt: skip
        copy = {"dataset": "dsA", "task": "t6", "job": "j2", "attempt": 1, "input_guid": guid}
        return [{"run_number": r, "event_number": e, "lumi_block": lumi, **copy} for r, e, lumi in keys]


def synthetic_events(seed: int) -> pa.Table:
    """The events of `synthetic:N:seed` (N from EVENTS, 500 for other seeds), sorted as the warehouse holds them."""
    n = EVENTS.get(seed, 500)
    return pa.concat_tables(SyntheticInput(n, seed).batches(n)).sort_by(SORT)


class _Builder:
    def __init__(self, root: Path, url: str) -> None:
        self.pipe = Pipeline(root)
        self.url = url

    def produce(self, job: Job) -> None:
        spec = JobSpec(task=job.task, job=job.job, attempt=job.attempt, dataset=job.dataset, chunk_events=500)
        with open_publisher(self.pipe.broker) as pub:
            JobRunner(spec, self.pipe.store, pub, on_progress=lambda progress: None).run(
                [SyntheticInput(EVENTS[job.seed], job.seed)]
            )

    def sink(self) -> Supersink:
        return Supersink(Ledger(self.pipe.root / "ledger.db"), self.pipe.store, Warehouse.from_url(self.url),
                         layout=LAYOUT)  # fmt: skip

    def run(self) -> None:
        sink = self.sink()
        with open_consumer(self.pipe.broker) as consumer:
            sink.run(consumer, threading.Event(), until_idle=0.3)
        sink.ledger.close()

    def force(self, task: str) -> None:
        sink = self.sink()
        sink.force_load(task)
        sink.ledger.close()

    def amend(self, task: str) -> None:
        sink = self.sink()
        amend(sink.ledger, sink.warehouse, task=task, store=self.pipe.store, assembly=sink.intake.assembly,
              owner=sink.owner, layout=LAYOUT)  # fmt: skip
        sink.ledger.close()


def _parts(table: pa.Table, task: str) -> pa.Table:
    n = table.num_rows
    return (
        table.append_column("task", pa.array([task] * n))
        .append_column("job", pa.array(["j1"] * n))
        .append_column("attempt", pa.array(np.ones(n, np.int32)))
        .cast(WAREHOUSE_SCHEMA)
    )


def _write_parquet(warehouse: Warehouse, path: str, table: pa.Table) -> None:
    with warehouse.fs.open_output_stream(path) as out:
        pq.write_table(table, out, compression="zstd")


def _rewrite_marker(warehouse: Warehouse, dataset: str, task: str, names: dict[str, list[str | None]]) -> None:
    """Record trigger names in a marker: {input GUID: names}, as `trigger_names` when every input file
    agrees, else as `trigger_name_sets`."""
    path = f"{warehouse.task_dir(dataset, task)}/{MARKER}"
    with warehouse.fs.open_input_stream(path) as src:
        marker = json.loads(src.read())
    masks = ("l1_tbp", "l1_tap", "l1_tav")
    lists = list(names.values())
    if all(each == lists[0] for each in lists):
        marker["trigger_names"] = dict.fromkeys(masks, lists[0])
    else:
        marker["trigger_name_sets"] = [
            {"column": mask, "names": value, "input_guids": [guid]} for mask in masks for guid, value in names.items()
        ]
    with warehouse.fs.open_output_stream(path) as out:
        out.write(json.dumps(marker).encode())


def build(root: Path, url: str) -> CatalogCase:
    """Run the pipeline into the warehouse at `url` (work files under `root`)."""
    b = _Builder(root, url)
    for job in COMMITTED:
        if (job.task, job.job) not in {("t3", "j2"), ("t4", "j1")}:
            b.produce(job)
    for task, jobs in {"t1": 2, "t2": 1, "t5": 1, "t6": 2, "t7": 2}.items():
        b.pipe.expect(jobs, task=task)
    b.run()
    for task, seed in (("t3", 4), ("t4", 8)):
        b.pipe.expect(2, task=task)
        b.produce(Job("dsA", task, "j1", seed))
        b.run()
        b.force(task)
    b.produce(Job("dsA", "t3", "j2", 5))
    b.run()
    b.amend("t3")
    warehouse = Warehouse.from_url(url)
    # Never committed: a load that died (claim, staged parts) and parts in place without a marker.
    warehouse.claim("dsA", "tU", "a-supersink-that-died")
    warehouse.begin("dsA", "tU")
    _write_parquet(
        warehouse, warehouse.write_path("dsA", "tU", "part-00000.parquet"), _parts(synthetic_events(9), "tU")
    )
    warehouse.fs.create_dir(warehouse.task_dir("dsA", "tV"), recursive=True)
    _write_parquet(
        warehouse, f"{warehouse.task_dir('dsA', 'tV')}/part-00000.parquet", _parts(synthetic_events(10), "tV")
    )
    case = CatalogCase(url, root, warehouse)
    for task in ("t1", "t2", "t3", "t4", "t5", "t6"):
        seeds = {job.seed for job in COMMITTED if (job.dataset, job.task) == ("dsA", task)}
        names = {SyntheticInput(EVENTS[seed], seed).guid: names_shifted() for seed in seeds}
        if task == "t1":
            names = {
                SyntheticInput(EVENTS[1], 1).guid: names_first(),
                "0BADF11E-0000-4000-8000-000000000000": names_shifted(),
            }
        _rewrite_marker(warehouse, "dsA", task, names)
        case.trigger_names.update({("dsA", task, guid): value for guid, value in names.items()})
    return case
