"""The result of ``kinship logs``: files read, detections, techniques (one document for the
JSON and the terminal view)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kinship.document import Document


@dataclass(frozen=True, slots=True)
class LogFile:
    """One input file: how many events were read from it, and why it stopped (None: read to
    the end). A file with an error may still have given events (a truncated one)."""

    path: str
    events: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RuleRef:
    """The Sigma rule of a detection; ``author`` is kept (DRL 1.1 asks for the credit)."""

    id: str | None
    title: str
    level: str | None
    author: str | None
    path: str


@dataclass(frozen=True, slots=True)
class EventRef:
    """The event a rule matched, with every flattened field of it (values from the log)."""

    file: str
    record_id: int | None
    timestamp: str | None  # ISO 8601, UTC, as the log states it
    channel: str | None
    event_id: int | None
    computer: str | None
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Detection:
    rule: RuleRef
    techniques: tuple[str, ...]  # "T1070.001", from the rule's attack.tNNNN tags
    event: EventRef


@dataclass(frozen=True, slots=True)
class TechniqueSummary:
    id: str
    name: str | None  # ATT&CK name; None when the offline ATT&CK data does not know the id
    tactics: tuple[str, ...]
    count: int
    first_seen: str | None
    last_seen: str | None


@dataclass(frozen=True, slots=True)
class RuleFailure:
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class RuleStats:
    """What happened to the rules: ``loaded`` parsed, ``evaluated`` run over matching events,
    ``unsupported_logsource`` whose log source kinship does not map to a channel yet,
    ``failed`` (did not parse or convert), each named with its reason."""

    loaded: int = 0
    evaluated: int = 0
    unsupported_logsource: int = 0
    failed: tuple[RuleFailure, ...] = ()


@dataclass(frozen=True, slots=True)
class LogResult(Document):
    files: tuple[LogFile, ...]
    detections: tuple[Detection, ...]
    techniques: tuple[TechniqueSummary, ...]
    rules: RuleStats
    events: int  # events read, after --since/--until

    @property
    def failed_files(self) -> tuple[LogFile, ...]:
        return tuple(f for f in self.files if f.error is not None)
