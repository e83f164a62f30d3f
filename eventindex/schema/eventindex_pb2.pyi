from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttemptStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_STATUS_UNSPECIFIED: _ClassVar[AttemptStatus]
    ATTEMPT_STATUS_OK: _ClassVar[AttemptStatus]
    ATTEMPT_STATUS_FAILED: _ClassVar[AttemptStatus]

class PointerKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POINTER_KIND_UNSPECIFIED: _ClassVar[PointerKind]
    POINTER_KIND_CHUNK: _ClassVar[PointerKind]
    POINTER_KIND_MANIFEST: _ClassVar[PointerKind]
    POINTER_KIND_TASK_EXPECTATION: _ClassVar[PointerKind]
    POINTER_KIND_EVENTS: _ClassVar[PointerKind]
ATTEMPT_STATUS_UNSPECIFIED: AttemptStatus
ATTEMPT_STATUS_OK: AttemptStatus
ATTEMPT_STATUS_FAILED: AttemptStatus
POINTER_KIND_UNSPECIFIED: PointerKind
POINTER_KIND_CHUNK: PointerKind
POINTER_KIND_MANIFEST: PointerKind
POINTER_KIND_TASK_EXPECTATION: PointerKind
POINTER_KIND_EVENTS: PointerKind

class Provenance(_message.Message):
    __slots__ = ("stream", "guid", "container", "clid", "tech", "oid1", "oid2", "absent")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    GUID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    CLID_FIELD_NUMBER: _ClassVar[int]
    TECH_FIELD_NUMBER: _ClassVar[int]
    OID1_FIELD_NUMBER: _ClassVar[int]
    OID2_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    stream: str
    guid: str
    container: str
    clid: str
    tech: int
    oid1: int
    oid2: int
    absent: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, stream: _Optional[str] = ..., guid: _Optional[str] = ..., container: _Optional[str] = ..., clid: _Optional[str] = ..., tech: _Optional[int] = ..., oid1: _Optional[int] = ..., oid2: _Optional[int] = ..., absent: _Optional[_Iterable[int]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("run_number", "event_number", "lumi_block", "timestamp", "timestamp_ns_offset", "bcid", "extended_level1_id", "is_simulation", "is_calibration", "is_testbeam", "l1_tbp", "l1_tap", "l1_tav", "l2_passed_physics", "l2_passed_through", "l2_resurrected", "hlt_passed_physics", "hlt_passed_through", "hlt_resurrected", "smk", "hlt_psk", "l1_psk", "mc_event_weight", "mc_channel_number", "provenance", "input_guid", "absent")
    RUN_NUMBER_FIELD_NUMBER: _ClassVar[int]
    EVENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    LUMI_BLOCK_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_OFFSET_FIELD_NUMBER: _ClassVar[int]
    BCID_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_LEVEL1_ID_FIELD_NUMBER: _ClassVar[int]
    IS_SIMULATION_FIELD_NUMBER: _ClassVar[int]
    IS_CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    IS_TESTBEAM_FIELD_NUMBER: _ClassVar[int]
    L1_TBP_FIELD_NUMBER: _ClassVar[int]
    L1_TAP_FIELD_NUMBER: _ClassVar[int]
    L1_TAV_FIELD_NUMBER: _ClassVar[int]
    L2_PASSED_PHYSICS_FIELD_NUMBER: _ClassVar[int]
    L2_PASSED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    L2_RESURRECTED_FIELD_NUMBER: _ClassVar[int]
    HLT_PASSED_PHYSICS_FIELD_NUMBER: _ClassVar[int]
    HLT_PASSED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    HLT_RESURRECTED_FIELD_NUMBER: _ClassVar[int]
    SMK_FIELD_NUMBER: _ClassVar[int]
    HLT_PSK_FIELD_NUMBER: _ClassVar[int]
    L1_PSK_FIELD_NUMBER: _ClassVar[int]
    MC_EVENT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MC_CHANNEL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    INPUT_GUID_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    run_number: int
    event_number: int
    lumi_block: int
    timestamp: int
    timestamp_ns_offset: int
    bcid: int
    extended_level1_id: int
    is_simulation: bool
    is_calibration: bool
    is_testbeam: bool
    l1_tbp: bytes
    l1_tap: bytes
    l1_tav: bytes
    l2_passed_physics: bytes
    l2_passed_through: bytes
    l2_resurrected: bytes
    hlt_passed_physics: bytes
    hlt_passed_through: bytes
    hlt_resurrected: bytes
    smk: int
    hlt_psk: int
    l1_psk: int
    mc_event_weight: float
    mc_channel_number: int
    provenance: _containers.RepeatedCompositeFieldContainer[Provenance]
    input_guid: str
    absent: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, run_number: _Optional[int] = ..., event_number: _Optional[int] = ..., lumi_block: _Optional[int] = ..., timestamp: _Optional[int] = ..., timestamp_ns_offset: _Optional[int] = ..., bcid: _Optional[int] = ..., extended_level1_id: _Optional[int] = ..., is_simulation: _Optional[bool] = ..., is_calibration: _Optional[bool] = ..., is_testbeam: _Optional[bool] = ..., l1_tbp: _Optional[bytes] = ..., l1_tap: _Optional[bytes] = ..., l1_tav: _Optional[bytes] = ..., l2_passed_physics: _Optional[bytes] = ..., l2_passed_through: _Optional[bytes] = ..., l2_resurrected: _Optional[bytes] = ..., hlt_passed_physics: _Optional[bytes] = ..., hlt_passed_through: _Optional[bytes] = ..., hlt_resurrected: _Optional[bytes] = ..., smk: _Optional[int] = ..., hlt_psk: _Optional[int] = ..., l1_psk: _Optional[int] = ..., mc_event_weight: _Optional[float] = ..., mc_channel_number: _Optional[int] = ..., provenance: _Optional[_Iterable[_Union[Provenance, _Mapping]]] = ..., input_guid: _Optional[str] = ..., absent: _Optional[_Iterable[int]] = ...) -> None: ...

class StringColumn(_message.Message):
    __slots__ = ("values", "index", "absent")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    index: _containers.RepeatedScalarFieldContainer[int]
    absent: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, values: _Optional[_Iterable[str]] = ..., index: _Optional[_Iterable[int]] = ..., absent: _Optional[_Iterable[bool]] = ...) -> None: ...

class MaskColumn(_message.Message):
    __slots__ = ("width_bits", "counts", "positions", "absent", "bitmaps")
    WIDTH_BITS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    BITMAPS_FIELD_NUMBER: _ClassVar[int]
    width_bits: int
    counts: _containers.RepeatedScalarFieldContainer[int]
    positions: _containers.RepeatedScalarFieldContainer[int]
    absent: _containers.RepeatedScalarFieldContainer[bool]
    bitmaps: bytes
    def __init__(self, width_bits: _Optional[int] = ..., counts: _Optional[_Iterable[int]] = ..., positions: _Optional[_Iterable[int]] = ..., absent: _Optional[_Iterable[bool]] = ..., bitmaps: _Optional[bytes] = ...) -> None: ...

class ChunkBody(_message.Message):
    __slots__ = ("rows", "run_number", "event_number", "lumi_block", "timestamp", "timestamp_ns_offset", "bcid", "extended_level1_id", "extended_level1_id_present", "is_simulation", "is_calibration", "is_testbeam", "mc_channel_number", "mc_event_weight", "smk", "hlt_psk", "l1_psk", "l1_tbp", "l1_tap", "l1_tav", "l2_passed_physics", "l2_passed_through", "l2_resurrected", "hlt_passed_physics", "hlt_passed_through", "hlt_resurrected", "provenance_count", "provenance_stream", "provenance_guid", "provenance_container", "provenance_clid", "provenance_tech", "provenance_oid1", "provenance_oid2", "input_guid", "lumi_block_absent", "timestamp_absent", "timestamp_ns_offset_absent", "bcid_absent", "extended_level1_id_absent", "is_simulation_absent", "is_calibration_absent", "is_testbeam_absent", "mc_channel_number_absent", "mc_event_weight_absent", "smk_absent", "hlt_psk_absent", "l1_psk_absent", "provenance_absent", "provenance_tech_absent", "provenance_oid1_absent", "provenance_oid2_absent")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    RUN_NUMBER_FIELD_NUMBER: _ClassVar[int]
    EVENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    LUMI_BLOCK_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_OFFSET_FIELD_NUMBER: _ClassVar[int]
    BCID_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_LEVEL1_ID_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_LEVEL1_ID_PRESENT_FIELD_NUMBER: _ClassVar[int]
    IS_SIMULATION_FIELD_NUMBER: _ClassVar[int]
    IS_CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    IS_TESTBEAM_FIELD_NUMBER: _ClassVar[int]
    MC_CHANNEL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MC_EVENT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SMK_FIELD_NUMBER: _ClassVar[int]
    HLT_PSK_FIELD_NUMBER: _ClassVar[int]
    L1_PSK_FIELD_NUMBER: _ClassVar[int]
    L1_TBP_FIELD_NUMBER: _ClassVar[int]
    L1_TAP_FIELD_NUMBER: _ClassVar[int]
    L1_TAV_FIELD_NUMBER: _ClassVar[int]
    L2_PASSED_PHYSICS_FIELD_NUMBER: _ClassVar[int]
    L2_PASSED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    L2_RESURRECTED_FIELD_NUMBER: _ClassVar[int]
    HLT_PASSED_PHYSICS_FIELD_NUMBER: _ClassVar[int]
    HLT_PASSED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    HLT_RESURRECTED_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_STREAM_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_GUID_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_CONTAINER_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_CLID_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_TECH_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_OID1_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_OID2_FIELD_NUMBER: _ClassVar[int]
    INPUT_GUID_FIELD_NUMBER: _ClassVar[int]
    LUMI_BLOCK_ABSENT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_ABSENT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_OFFSET_ABSENT_FIELD_NUMBER: _ClassVar[int]
    BCID_ABSENT_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_LEVEL1_ID_ABSENT_FIELD_NUMBER: _ClassVar[int]
    IS_SIMULATION_ABSENT_FIELD_NUMBER: _ClassVar[int]
    IS_CALIBRATION_ABSENT_FIELD_NUMBER: _ClassVar[int]
    IS_TESTBEAM_ABSENT_FIELD_NUMBER: _ClassVar[int]
    MC_CHANNEL_NUMBER_ABSENT_FIELD_NUMBER: _ClassVar[int]
    MC_EVENT_WEIGHT_ABSENT_FIELD_NUMBER: _ClassVar[int]
    SMK_ABSENT_FIELD_NUMBER: _ClassVar[int]
    HLT_PSK_ABSENT_FIELD_NUMBER: _ClassVar[int]
    L1_PSK_ABSENT_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_ABSENT_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_TECH_ABSENT_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_OID1_ABSENT_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_OID2_ABSENT_FIELD_NUMBER: _ClassVar[int]
    rows: int
    run_number: _containers.RepeatedScalarFieldContainer[int]
    event_number: _containers.RepeatedScalarFieldContainer[int]
    lumi_block: _containers.RepeatedScalarFieldContainer[int]
    timestamp: _containers.RepeatedScalarFieldContainer[int]
    timestamp_ns_offset: _containers.RepeatedScalarFieldContainer[int]
    bcid: _containers.RepeatedScalarFieldContainer[int]
    extended_level1_id: _containers.RepeatedScalarFieldContainer[int]
    extended_level1_id_present: _containers.RepeatedScalarFieldContainer[bool]
    is_simulation: _containers.RepeatedScalarFieldContainer[bool]
    is_calibration: _containers.RepeatedScalarFieldContainer[bool]
    is_testbeam: _containers.RepeatedScalarFieldContainer[bool]
    mc_channel_number: _containers.RepeatedScalarFieldContainer[int]
    mc_event_weight: _containers.RepeatedScalarFieldContainer[float]
    smk: _containers.RepeatedScalarFieldContainer[int]
    hlt_psk: _containers.RepeatedScalarFieldContainer[int]
    l1_psk: _containers.RepeatedScalarFieldContainer[int]
    l1_tbp: MaskColumn
    l1_tap: MaskColumn
    l1_tav: MaskColumn
    l2_passed_physics: MaskColumn
    l2_passed_through: MaskColumn
    l2_resurrected: MaskColumn
    hlt_passed_physics: MaskColumn
    hlt_passed_through: MaskColumn
    hlt_resurrected: MaskColumn
    provenance_count: _containers.RepeatedScalarFieldContainer[int]
    provenance_stream: StringColumn
    provenance_guid: StringColumn
    provenance_container: StringColumn
    provenance_clid: StringColumn
    provenance_tech: _containers.RepeatedScalarFieldContainer[int]
    provenance_oid1: _containers.RepeatedScalarFieldContainer[int]
    provenance_oid2: _containers.RepeatedScalarFieldContainer[int]
    input_guid: StringColumn
    lumi_block_absent: _containers.RepeatedScalarFieldContainer[bool]
    timestamp_absent: _containers.RepeatedScalarFieldContainer[bool]
    timestamp_ns_offset_absent: _containers.RepeatedScalarFieldContainer[bool]
    bcid_absent: _containers.RepeatedScalarFieldContainer[bool]
    extended_level1_id_absent: _containers.RepeatedScalarFieldContainer[bool]
    is_simulation_absent: _containers.RepeatedScalarFieldContainer[bool]
    is_calibration_absent: _containers.RepeatedScalarFieldContainer[bool]
    is_testbeam_absent: _containers.RepeatedScalarFieldContainer[bool]
    mc_channel_number_absent: _containers.RepeatedScalarFieldContainer[bool]
    mc_event_weight_absent: _containers.RepeatedScalarFieldContainer[bool]
    smk_absent: _containers.RepeatedScalarFieldContainer[bool]
    hlt_psk_absent: _containers.RepeatedScalarFieldContainer[bool]
    l1_psk_absent: _containers.RepeatedScalarFieldContainer[bool]
    provenance_absent: _containers.RepeatedScalarFieldContainer[bool]
    provenance_tech_absent: _containers.RepeatedScalarFieldContainer[bool]
    provenance_oid1_absent: _containers.RepeatedScalarFieldContainer[bool]
    provenance_oid2_absent: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, rows: _Optional[int] = ..., run_number: _Optional[_Iterable[int]] = ..., event_number: _Optional[_Iterable[int]] = ..., lumi_block: _Optional[_Iterable[int]] = ..., timestamp: _Optional[_Iterable[int]] = ..., timestamp_ns_offset: _Optional[_Iterable[int]] = ..., bcid: _Optional[_Iterable[int]] = ..., extended_level1_id: _Optional[_Iterable[int]] = ..., extended_level1_id_present: _Optional[_Iterable[bool]] = ..., is_simulation: _Optional[_Iterable[bool]] = ..., is_calibration: _Optional[_Iterable[bool]] = ..., is_testbeam: _Optional[_Iterable[bool]] = ..., mc_channel_number: _Optional[_Iterable[int]] = ..., mc_event_weight: _Optional[_Iterable[float]] = ..., smk: _Optional[_Iterable[int]] = ..., hlt_psk: _Optional[_Iterable[int]] = ..., l1_psk: _Optional[_Iterable[int]] = ..., l1_tbp: _Optional[_Union[MaskColumn, _Mapping]] = ..., l1_tap: _Optional[_Union[MaskColumn, _Mapping]] = ..., l1_tav: _Optional[_Union[MaskColumn, _Mapping]] = ..., l2_passed_physics: _Optional[_Union[MaskColumn, _Mapping]] = ..., l2_passed_through: _Optional[_Union[MaskColumn, _Mapping]] = ..., l2_resurrected: _Optional[_Union[MaskColumn, _Mapping]] = ..., hlt_passed_physics: _Optional[_Union[MaskColumn, _Mapping]] = ..., hlt_passed_through: _Optional[_Union[MaskColumn, _Mapping]] = ..., hlt_resurrected: _Optional[_Union[MaskColumn, _Mapping]] = ..., provenance_count: _Optional[_Iterable[int]] = ..., provenance_stream: _Optional[_Union[StringColumn, _Mapping]] = ..., provenance_guid: _Optional[_Union[StringColumn, _Mapping]] = ..., provenance_container: _Optional[_Union[StringColumn, _Mapping]] = ..., provenance_clid: _Optional[_Union[StringColumn, _Mapping]] = ..., provenance_tech: _Optional[_Iterable[int]] = ..., provenance_oid1: _Optional[_Iterable[int]] = ..., provenance_oid2: _Optional[_Iterable[int]] = ..., input_guid: _Optional[_Union[StringColumn, _Mapping]] = ..., lumi_block_absent: _Optional[_Iterable[bool]] = ..., timestamp_absent: _Optional[_Iterable[bool]] = ..., timestamp_ns_offset_absent: _Optional[_Iterable[bool]] = ..., bcid_absent: _Optional[_Iterable[bool]] = ..., extended_level1_id_absent: _Optional[_Iterable[bool]] = ..., is_simulation_absent: _Optional[_Iterable[bool]] = ..., is_calibration_absent: _Optional[_Iterable[bool]] = ..., is_testbeam_absent: _Optional[_Iterable[bool]] = ..., mc_channel_number_absent: _Optional[_Iterable[bool]] = ..., mc_event_weight_absent: _Optional[_Iterable[bool]] = ..., smk_absent: _Optional[_Iterable[bool]] = ..., hlt_psk_absent: _Optional[_Iterable[bool]] = ..., l1_psk_absent: _Optional[_Iterable[bool]] = ..., provenance_absent: _Optional[_Iterable[bool]] = ..., provenance_tech_absent: _Optional[_Iterable[bool]] = ..., provenance_oid1_absent: _Optional[_Iterable[bool]] = ..., provenance_oid2_absent: _Optional[_Iterable[bool]] = ...) -> None: ...

class InputFileSummary(_message.Message):
    __slots__ = ("guid", "name", "events", "unique_events", "declared_events", "runs", "start_time_ms", "end_time_ms", "notes", "trigger_names")
    class RunRange(_message.Message):
        __slots__ = ("run_number", "first_event", "last_event", "events")
        RUN_NUMBER_FIELD_NUMBER: _ClassVar[int]
        FIRST_EVENT_FIELD_NUMBER: _ClassVar[int]
        LAST_EVENT_FIELD_NUMBER: _ClassVar[int]
        EVENTS_FIELD_NUMBER: _ClassVar[int]
        run_number: int
        first_event: int
        last_event: int
        events: int
        def __init__(self, run_number: _Optional[int] = ..., first_event: _Optional[int] = ..., last_event: _Optional[int] = ..., events: _Optional[int] = ...) -> None: ...
    class TriggerNames(_message.Message):
        __slots__ = ("column", "names")
        COLUMN_FIELD_NUMBER: _ClassVar[int]
        NAMES_FIELD_NUMBER: _ClassVar[int]
        column: str
        names: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, column: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...
    GUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    DECLARED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_NAMES_FIELD_NUMBER: _ClassVar[int]
    guid: str
    name: str
    events: int
    unique_events: int
    declared_events: int
    runs: _containers.RepeatedCompositeFieldContainer[InputFileSummary.RunRange]
    start_time_ms: int
    end_time_ms: int
    notes: _containers.RepeatedScalarFieldContainer[str]
    trigger_names: _containers.RepeatedCompositeFieldContainer[InputFileSummary.TriggerNames]
    def __init__(self, guid: _Optional[str] = ..., name: _Optional[str] = ..., events: _Optional[int] = ..., unique_events: _Optional[int] = ..., declared_events: _Optional[int] = ..., runs: _Optional[_Iterable[_Union[InputFileSummary.RunRange, _Mapping]]] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., notes: _Optional[_Iterable[str]] = ..., trigger_names: _Optional[_Iterable[_Union[InputFileSummary.TriggerNames, _Mapping]]] = ...) -> None: ...

class ChunkEntry(_message.Message):
    __slots__ = ("seq", "key", "size", "sha256", "events")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    key: str
    size: int
    sha256: bytes
    events: int
    def __init__(self, seq: _Optional[int] = ..., key: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[bytes] = ..., events: _Optional[int] = ...) -> None: ...

class Manifest(_message.Message):
    __slots__ = ("schema_version", "task", "job", "attempt", "dataset", "chunks", "inputs", "total_events", "producer_version", "start_time_ms", "end_time_ms", "status", "message")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EVENTS_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_VERSION_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    task: str
    job: str
    attempt: int
    dataset: str
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkEntry]
    inputs: _containers.RepeatedCompositeFieldContainer[InputFileSummary]
    total_events: int
    producer_version: str
    start_time_ms: int
    end_time_ms: int
    status: AttemptStatus
    message: str
    def __init__(self, schema_version: _Optional[int] = ..., task: _Optional[str] = ..., job: _Optional[str] = ..., attempt: _Optional[int] = ..., dataset: _Optional[str] = ..., chunks: _Optional[_Iterable[_Union[ChunkEntry, _Mapping]]] = ..., inputs: _Optional[_Iterable[_Union[InputFileSummary, _Mapping]]] = ..., total_events: _Optional[int] = ..., producer_version: _Optional[str] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., status: _Optional[_Union[AttemptStatus, str]] = ..., message: _Optional[str] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class Pointer(_message.Message):
    __slots__ = ("schema_version", "kind", "url", "size", "sha256", "events", "task", "job", "attempt", "dataset", "seq", "expected_jobs", "expected_events", "producer_version", "sent_time_ms", "payload", "input_guid", "last", "part")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_JOBS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_VERSION_FIELD_NUMBER: _ClassVar[int]
    SENT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INPUT_GUID_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    kind: PointerKind
    url: str
    size: int
    sha256: bytes
    events: int
    task: str
    job: str
    attempt: int
    dataset: str
    seq: int
    expected_jobs: int
    expected_events: int
    producer_version: str
    sent_time_ms: int
    payload: bytes
    input_guid: str
    last: bool
    part: int
    def __init__(self, schema_version: _Optional[int] = ..., kind: _Optional[_Union[PointerKind, str]] = ..., url: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[bytes] = ..., events: _Optional[int] = ..., task: _Optional[str] = ..., job: _Optional[str] = ..., attempt: _Optional[int] = ..., dataset: _Optional[str] = ..., seq: _Optional[int] = ..., expected_jobs: _Optional[int] = ..., expected_events: _Optional[int] = ..., producer_version: _Optional[str] = ..., sent_time_ms: _Optional[int] = ..., payload: _Optional[bytes] = ..., input_guid: _Optional[str] = ..., last: _Optional[bool] = ..., part: _Optional[int] = ...) -> None: ...
