"""What a postmortem document shows: plain values, the ones the templates lay out.

:func:`incidentbot.postmortems.document.build` fills a :class:`Document` from the database;
times in it are already written in the team's time zone, names are people's names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from incidentbot.postmortems import blameless

LABELS = {"pin": "Pinned", "update": "Status update", "note": "Note"}
# Sections the templates place in the story (summary first, impact with the numbers, ...).
PLACED = ("summary", "impact", "trigger", "detection", "resolution")


@dataclass(slots=True)
class Entry:
    at: str
    actor: str
    category: str
    kind: str
    text: str
    # A word for entries people wrote: pinned messages, status updates, notes ("" otherwise).
    # Set from the category once: the renderers and the language check ask for each entry's.
    label: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.label = LABELS.get(self.category, "")


@dataclass
class Milestone:
    name: str
    label: str
    at: str | None
    source: str = ""  # where the time came from: "set by Alice", "the first alert that fired"


@dataclass
class SeverityRow:
    severity: str
    label: str
    duration: str
    note: str = ""


@dataclass
class SeverityChange:
    at: str
    before: str
    after: str
    by: str


@dataclass
class RoleRow:
    role: str
    person: str
    start: str
    end: str
    assigned_by: str


@dataclass
class Participant:
    name: str
    roles: list[str]
    first_seen: str
    events: int


@dataclass
class StepRow:
    number: int
    id: str
    label: str
    outcome: str
    status: str
    detail: str = ""
    attempts: int = 0
    rollback: bool = False


@dataclass
class RunDoc:
    run_id: int
    runbook: str
    description: str
    status: str
    outcome: str
    requested_by: str
    requested_at: str
    source: str
    target: str | None
    approval: str
    approvals: list[tuple[str, str, str]]  # (who, decision, at)
    params: list[tuple[str, str]]
    steps: list[StepRow]
    error: str | None
    finished_at: str | None
    duration: str | None
    link: str | None
    command: str


@dataclass
class PageRow:
    service: str
    number: str
    status: str
    requested_by: str
    requested_at: str
    acknowledged: str
    url: str | None
    message: str | None


@dataclass
class ActionRow:
    id: int
    text: str
    owner: str
    due: str
    priority: str
    status: str
    url: str | None
    overdue_days: int = 0  # open and past its due date by this many days


@dataclass
class SectionDoc:
    key: str
    title: str
    prompt: str
    text: str
    findings: list[blameless.Finding] = field(default_factory=list)

    @property
    def written(self) -> bool:
        return bool(self.text.strip())


@dataclass
class Link:
    label: str
    url: str | None
    command: str | None = None  # what to run where there is no link


@dataclass
class MetricRow:
    label: str
    span: str
    value: str
    state: str
    sources: str = ""  # where its two times came from


@dataclass(frozen=True)
class ImpactNumber:
    """One impact number (requests failed, validators affected, …) and where it came from."""

    key: str
    label: str
    value: str  # "1,200", "40m 00s"; "—" when not given
    source: str  # "typed by Alice at …", "sampled from the beacon node: …"; "" when missing
    state: str  # typed, sampled or missing

    @property
    def given(self) -> bool:
        return self.state != "missing"


@dataclass
class Document:
    ref: str
    title: str
    timezone: str
    incident_status: str
    severity: str
    severity_label: str
    worst_severity: str
    status: str  # the postmortem's: draft, in_review, published
    status_label: str
    required: bool
    requirement: str
    due: str | None
    owner: str | None
    published_at: str | None
    published_path: str | None
    declared_by: str
    commander: str | None
    description: str | None
    summary: str | None
    fields: list[tuple[str, str]]
    milestones: list[Milestone]
    impact: list[MetricRow]
    impact_numbers: list[ImpactNumber]  # typed or sampled; "missing" ones too
    metrics: list[MetricRow]
    detection: list[tuple[str, str]]  # the alerts that fired: (at, what)
    order_problems: list[str]
    severity_times: list[SeverityRow]
    severity_changes: list[SeverityChange]
    declared_severity: str
    declared_at: str
    roles: list[RoleRow]
    participants: list[Participant]
    timeline: list[Entry]
    runs: list[RunDoc]
    pages: list[PageRow]
    action_items: list[ActionRow]
    sections: list[SectionDoc]
    findings: list[blameless.Finding]
    links: list[Link]
    notices: list[str]
    event_count: int  # on the full timeline (``incidentbot timeline``)
    shown_count: int  # told in the document's timeline
    first_event: str | None
    last_event: str | None

    @property
    def impact_given(self) -> list[ImpactNumber]:
        return [n for n in self.impact_numbers if n.given]

    @property
    def impact_missing(self) -> list[ImpactNumber]:
        return [n for n in self.impact_numbers if not n.given]

    @property
    def sections_written(self) -> int:
        return sum(1 for s in self.sections if s.written)

    def section(self, key: str) -> SectionDoc:
        """One section by its key (the templates place the first ones in the story)."""
        return next(s for s in self.sections if s.key == key)

    @property
    def review_sections(self) -> list[SectionDoc]:
        """The sections told after the timeline: the review, and any a template adds."""
        return [s for s in self.sections if s.key not in PLACED]
