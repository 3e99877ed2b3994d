"""The in-memory PagerDuty account: people, services, schedules, policies, incidents.

One re-entrant lock guards everything: API calls arrive on the server's event loop while tests
act as responders from other threads. Every incident change goes through ``incidents.py``,
which calls ``emit`` so the webhook sender hears about it.

The seeded account matches the Slack sandbox's people (same names, same
``<name>@nodeworks.example`` emails) so a demo can page Bob in PagerDuty and mention him in
Slack, and it has the three services users type at ``/incident page``: ``rpc``,
``validators`` and ``indexer``, each with an escalation policy of two levels fed by rotations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from incidentbot.sandbox.pagerduty.ids import PdIds, to_datetime
from incidentbot.sandbox.pagerduty.models import (
    Agent,
    ChangeEvent,
    EscalationPolicy,
    EscalationRule,
    Incident,
    Integration,
    Schedule,
    Service,
    User,
)

DEFAULT_API_TOKEN = "y_NbAkKc66ryYTWUXYEu"  # noqa: S105 - accepted only by this sandbox
SEED_EMAIL_DOMAIN = "nodeworks.example"
ROTATION_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
HOUR = 3600
DAY = 24 * HOUR
WEEK = 7 * DAY

# (handle, name, role, job title, colour); emails are <handle>@nodeworks.example.
SEED_PEOPLE: tuple[tuple[str, str, str, str, str], ...] = (
    ("alice", "Alice Moreau", "admin", "SRE lead", "purple"),
    ("bob", "Bob Okafor", "user", "Node operator", "green"),
    ("carol", "Carol Nguyen", "user", "RPC platform engineer", "teal"),
    ("dave", "Dave Kim", "user", "Validator operations", "orange"),
    ("erin", "Erin Schultz", "limited_user", "Support engineer", "red"),
)


@dataclass(frozen=True)
class SeedRotation:
    key: str
    name: str
    users: tuple[str, ...]
    turn_seconds: int
    offset_seconds: int  # handoff time after the epoch's midnight


SEED_ROTATIONS = (
    SeedRotation("rpc-primary", "RPC primary", ("bob", "carol"), WEEK, 9 * HOUR),
    SeedRotation("validators-primary", "Validators primary", ("dave", "erin"), 12 * HOUR, 8 * HOUR),
    SeedRotation("indexer-primary", "Indexer primary", ("carol", "erin", "bob"), DAY, 9 * HOUR),
    SeedRotation("sre-leads", "SRE leads", ("alice", "dave"), WEEK, 9 * HOUR),
)
# service name, description, level-1 rotation, level-1 delay in minutes
SEED_SERVICES = (
    ("rpc", "Public JSON-RPC endpoints behind HAProxy", "rpc-primary", 15),
    ("validators", "Validator clients and their beacon nodes", "validators-primary", 10),
    ("indexer", "Chain indexer and its snapshot pipeline", "indexer-primary", 30),
)

Listener = Callable[[str, Incident, Agent | None, dict[str, Any]], None]


class Account:
    """All state of one sandbox account; see the module docstring for the locking rule."""

    def __init__(
        self,
        *,
        api_token: str = DEFAULT_API_TOKEN,
        seed: bool = True,
        id_seed: int = 11,
        clock: Callable[[], float] = time.time,
        subdomain: str = "nodeworks",
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.ids = PdIds(id_seed)
        self.subdomain = subdomain
        # Where ``self`` and ``html_url`` point; the server sets them when it starts.
        self.api_url = "https://api.pagerduty.com"
        self.web_url = f"https://{subdomain}.pagerduty.com"
        self.api_token = api_token
        self.tokens: dict[str, str | None] = {api_token: None}  # token -> user id (None: account)
        self.users: dict[str, User] = {}
        self.schedules: dict[str, Schedule] = {}
        self.policies: dict[str, EscalationPolicy] = {}
        self.services: dict[str, Service] = {}
        self.incidents: dict[str, Incident] = {}
        self.change_events: list[ChangeEvent] = []
        self.listeners: list[Listener] = []
        self.next_number = 1
        if seed:
            self._seed()

    def now(self) -> datetime:
        return to_datetime(self.clock())

    # -- seeding --------------------------------------------------------------------------

    def _seed(self) -> None:
        for handle, name, role, title, colour in SEED_PEOPLE:
            self.add_user(handle, name, f"{handle}@{SEED_EMAIL_DOMAIN}", role, title, colour)
        by_key = {}
        for rot in SEED_ROTATIONS:
            start = ROTATION_EPOCH.timestamp() + rot.offset_seconds
            by_key[rot.key] = self.add_schedule(
                rot.name,
                [self.user(h).id for h in rot.users],
                turn_seconds=rot.turn_seconds,
                virtual_start=to_datetime(start),
                description=f"{rot.name} rotation",
            )
        for name, description, rotation, delay in SEED_SERVICES:
            policy = self.add_policy(
                f"{name.capitalize()} escalation",
                [(delay, [by_key[rotation].id]), (30, [by_key["sre-leads"].id])],
            )
            self.add_service(name, description, policy.id)

    def add_user(
        self,
        handle: str,
        name: str,
        email: str,
        role: str = "user",
        title: str = "",
        colour: str = "",
    ) -> User:
        """Add a person (tests use it for extra responders)."""
        with self.lock:
            user = User(self.ids.new(), handle, name, email, role, title, colour or "blue")
            self.users[user.id] = user
            return user

    def add_schedule(
        self,
        name: str,
        user_ids: list[str],
        *,
        turn_seconds: int,
        virtual_start: datetime,
        description: str = "",
    ) -> Schedule:
        """A schedule whose single layer rotates ``user_ids`` every ``turn_seconds``."""
        if not user_ids or turn_seconds <= 0:
            raise ValueError("a rotation needs users and a positive turn length")
        with self.lock:
            schedule = Schedule(
                self.ids.new(),
                name,
                description,
                list(user_ids),
                virtual_start,
                turn_seconds,
                self.ids.new(),
            )
            self.schedules[schedule.id] = schedule
            return schedule

    def add_policy(self, name: str, levels: list[tuple[int, list[str]]]) -> EscalationPolicy:
        """An escalation policy; ``levels`` is ``[(delay_minutes, [schedule ids]), ...]``."""
        with self.lock:
            rules = [EscalationRule(self.ids.new(), delay, list(ids)) for delay, ids in levels]
            policy = EscalationPolicy(self.ids.new(), name, f"Pages {name.lower()}", rules)
            self.policies[policy.id] = policy
            return policy

    def add_service(self, name: str, description: str, policy_id: str) -> Service:
        """A service with one Events API v2 integration (its routing key)."""
        with self.lock:
            now = self.now()
            service = Service(self.ids.new(), name, description, policy_id, now)
            service.integrations.append(
                Integration(self.ids.new(), self.ids.key(), "Events API v2", service.id, now)
            )
            self.services[service.id] = service
            return service

    def user_token(self, user: str) -> str:
        """A user-level API token for ``user``: writes with it need no ``From`` header."""
        with self.lock:
            uid = self.user(user).id
            for token, owner in self.tokens.items():
                if owner == uid:
                    return token
            token = "u+" + self.ids.key()[:18]
            self.tokens[token] = uid
            return token

    # -- lookups --------------------------------------------------------------------------

    def find_user(self, ref: str) -> User | None:
        """A user by id, handle (``bob``) or email (case-insensitive)."""
        with self.lock:
            if ref in self.users:
                return self.users[ref]
            low = ref.strip().lower()
            for user in self.users.values():
                if low in (user.handle.lower(), user.email.lower()):
                    return user
            return None

    def user(self, ref: str) -> User:
        user = self.find_user(ref)
        if user is None:
            raise KeyError(f"no PagerDuty user {ref!r}")
        return user

    def find_service(self, ref: str) -> Service | None:
        """A service by id or name."""
        with self.lock:
            if ref in self.services:
                return self.services[ref]
            return next((s for s in self.services.values() if s.name == ref), None)

    def service(self, ref: str) -> Service:
        service = self.find_service(ref)
        if service is None:
            raise KeyError(f"no PagerDuty service {ref!r}")
        return service

    def service_for_key(self, routing_key: str) -> Service | None:
        with self.lock:
            for service in self.services.values():
                if any(i.key == routing_key for i in service.integrations):
                    return service
            return None

    def routing_key(self, service: str) -> str:
        """The Events API v2 routing key of a service (by name or id)."""
        return self.service(service).integrations[0].key

    def incident(self, ref: str) -> Incident:
        """An incident by id or number (``"3"``, ``3``, ``"#3"``)."""
        with self.lock:
            if ref in self.incidents:
                return self.incidents[ref]
            number = str(ref).lstrip("#")
            if number.isdigit():
                for incident in self.incidents.values():
                    if incident.number == int(number):
                        return incident
            raise KeyError(f"no PagerDuty incident {ref!r}")

    def emit(self, event_type: str, incident: Incident, agent: Agent | None, **extra: Any) -> None:
        """Tell listeners (the webhook sender) that ``incident`` changed."""
        for listener in list(self.listeners):
            listener(event_type, incident, agent, extra)
