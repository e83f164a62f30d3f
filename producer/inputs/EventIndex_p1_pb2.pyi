from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Header_p1(_message.Message):
    __slots__ = ("startProcTime", "taskID", "jobID", "inputDsName", "provenanceRef", "triggerInfo")
    STARTPROCTIME_FIELD_NUMBER: _ClassVar[int]
    TASKID_FIELD_NUMBER: _ClassVar[int]
    JOBID_FIELD_NUMBER: _ClassVar[int]
    INPUTDSNAME_FIELD_NUMBER: _ClassVar[int]
    PROVENANCEREF_FIELD_NUMBER: _ClassVar[int]
    TRIGGERINFO_FIELD_NUMBER: _ClassVar[int]
    startProcTime: int
    taskID: str
    jobID: str
    inputDsName: str
    provenanceRef: bool
    triggerInfo: bool
    def __init__(self, startProcTime: _Optional[int] = ..., taskID: _Optional[str] = ..., jobID: _Optional[str] = ..., inputDsName: _Optional[str] = ..., provenanceRef: _Optional[bool] = ..., triggerInfo: _Optional[bool] = ...) -> None: ...

class Trailer_p1(_message.Message):
    __slots__ = ("endProcTime", "nentries", "nfiles")
    ENDPROCTIME_FIELD_NUMBER: _ClassVar[int]
    NENTRIES_FIELD_NUMBER: _ClassVar[int]
    NFILES_FIELD_NUMBER: _ClassVar[int]
    endProcTime: int
    nentries: int
    nfiles: int
    def __init__(self, endProcTime: _Optional[int] = ..., nentries: _Optional[int] = ..., nfiles: _Optional[int] = ...) -> None: ...

class BeginGUID_p1(_message.Message):
    __slots__ = ("startProcTime", "AMITag", "trigStream", "projName", "guid")
    STARTPROCTIME_FIELD_NUMBER: _ClassVar[int]
    AMITAG_FIELD_NUMBER: _ClassVar[int]
    TRIGSTREAM_FIELD_NUMBER: _ClassVar[int]
    PROJNAME_FIELD_NUMBER: _ClassVar[int]
    GUID_FIELD_NUMBER: _ClassVar[int]
    startProcTime: int
    AMITag: str
    trigStream: str
    projName: str
    guid: str
    def __init__(self, startProcTime: _Optional[int] = ..., AMITag: _Optional[str] = ..., trigStream: _Optional[str] = ..., projName: _Optional[str] = ..., guid: _Optional[str] = ...) -> None: ...

class EndGUID_p1(_message.Message):
    __slots__ = ("endProcTime", "nentries")
    ENDPROCTIME_FIELD_NUMBER: _ClassVar[int]
    NENTRIES_FIELD_NUMBER: _ClassVar[int]
    endProcTime: int
    nentries: int
    def __init__(self, endProcTime: _Optional[int] = ..., nentries: _Optional[int] = ...) -> None: ...

class TriggerMenu_p1(_message.Message):
    __slots__ = ("SMK", "L1PSK", "HLTPSK", "L1Menu", "L2Menu", "EFMenu", "HLTMenu")
    SMK_FIELD_NUMBER: _ClassVar[int]
    L1PSK_FIELD_NUMBER: _ClassVar[int]
    HLTPSK_FIELD_NUMBER: _ClassVar[int]
    L1MENU_FIELD_NUMBER: _ClassVar[int]
    L2MENU_FIELD_NUMBER: _ClassVar[int]
    EFMENU_FIELD_NUMBER: _ClassVar[int]
    HLTMENU_FIELD_NUMBER: _ClassVar[int]
    SMK: int
    L1PSK: int
    HLTPSK: int
    L1Menu: str
    L2Menu: str
    EFMenu: str
    HLTMenu: str
    def __init__(self, SMK: _Optional[int] = ..., L1PSK: _Optional[int] = ..., HLTPSK: _Optional[int] = ..., L1Menu: _Optional[str] = ..., L2Menu: _Optional[str] = ..., EFMenu: _Optional[str] = ..., HLTMenu: _Optional[str] = ...) -> None: ...

class EIEvent_p1(_message.Message):
    __slots__ = ("runNumber", "eventNumber", "lumiBlock", "timeStamp", "timeStampNSOffset", "bcid", "extendedLevel1ID", "isSimulation", "isCalibration", "isTestBeam", "L1PassedTrigMask", "L2PassedTrigMask", "EFPassedTrigMask", "SMK", "HLTPSK", "L1PSK", "mcEventWeight", "mcChannelNumber", "eitoken")
    class EItoken_p1(_message.Message):
        __slots__ = ("name", "token")
        NAME_FIELD_NUMBER: _ClassVar[int]
        TOKEN_FIELD_NUMBER: _ClassVar[int]
        name: str
        token: str
        def __init__(self, name: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...
    RUNNUMBER_FIELD_NUMBER: _ClassVar[int]
    EVENTNUMBER_FIELD_NUMBER: _ClassVar[int]
    LUMIBLOCK_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPNSOFFSET_FIELD_NUMBER: _ClassVar[int]
    BCID_FIELD_NUMBER: _ClassVar[int]
    EXTENDEDLEVEL1ID_FIELD_NUMBER: _ClassVar[int]
    ISSIMULATION_FIELD_NUMBER: _ClassVar[int]
    ISCALIBRATION_FIELD_NUMBER: _ClassVar[int]
    ISTESTBEAM_FIELD_NUMBER: _ClassVar[int]
    L1PASSEDTRIGMASK_FIELD_NUMBER: _ClassVar[int]
    L2PASSEDTRIGMASK_FIELD_NUMBER: _ClassVar[int]
    EFPASSEDTRIGMASK_FIELD_NUMBER: _ClassVar[int]
    SMK_FIELD_NUMBER: _ClassVar[int]
    HLTPSK_FIELD_NUMBER: _ClassVar[int]
    L1PSK_FIELD_NUMBER: _ClassVar[int]
    MCEVENTWEIGHT_FIELD_NUMBER: _ClassVar[int]
    MCCHANNELNUMBER_FIELD_NUMBER: _ClassVar[int]
    EITOKEN_FIELD_NUMBER: _ClassVar[int]
    runNumber: int
    eventNumber: int
    lumiBlock: int
    timeStamp: int
    timeStampNSOffset: int
    bcid: int
    extendedLevel1ID: int
    isSimulation: bool
    isCalibration: bool
    isTestBeam: bool
    L1PassedTrigMask: str
    L2PassedTrigMask: str
    EFPassedTrigMask: str
    SMK: int
    HLTPSK: int
    L1PSK: int
    mcEventWeight: float
    mcChannelNumber: int
    eitoken: _containers.RepeatedCompositeFieldContainer[EIEvent_p1.EItoken_p1]
    def __init__(self, runNumber: _Optional[int] = ..., eventNumber: _Optional[int] = ..., lumiBlock: _Optional[int] = ..., timeStamp: _Optional[int] = ..., timeStampNSOffset: _Optional[int] = ..., bcid: _Optional[int] = ..., extendedLevel1ID: _Optional[int] = ..., isSimulation: _Optional[bool] = ..., isCalibration: _Optional[bool] = ..., isTestBeam: _Optional[bool] = ..., L1PassedTrigMask: _Optional[str] = ..., L2PassedTrigMask: _Optional[str] = ..., EFPassedTrigMask: _Optional[str] = ..., SMK: _Optional[int] = ..., HLTPSK: _Optional[int] = ..., L1PSK: _Optional[int] = ..., mcEventWeight: _Optional[float] = ..., mcChannelNumber: _Optional[int] = ..., eitoken: _Optional[_Iterable[_Union[EIEvent_p1.EItoken_p1, _Mapping]]] = ...) -> None: ...
