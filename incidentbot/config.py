"""Settings: environment variables plus an optional ``incidentbot.yaml``.

Precedence, highest first: ``INCIDENTBOT_*`` environment variables, files in the secrets
directory, then the YAML file, then the defaults below. Secrets (tokens, signing secrets) are
only read from the environment or the secrets directory; a YAML file that carries one is refused,
so a config file can be committed and shared without leaking anything.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from incidentbot.action_items.config import ActionItemSettings
from incidentbot.alerts.config import AlertsConfig, AlertSettings
from incidentbot.config_urls import url_problems
from incidentbot.handoff.config import HandoffSettings
from incidentbot.impact.config import ImpactSettings
from incidentbot.paging.config import PagerDutySettings
from incidentbot.people.config import PersonEntry, validate_people
from incidentbot.policy_models import (
    DEFAULT_FIELDS,
    DEFAULT_ROLES,
    DEFAULT_SEVERITIES,
    DEFAULT_STATUSES,
    REQUIRED_STATUSES,
    Channels,
    Duration,
    FieldSpec,
    HttpSettings,
    Responders,
    Role,
    Severity,
    SlackSettings,
    Status,
)
from incidentbot.postmortems.config import PostmortemSettings
from incidentbot.reminders.config import RemindersSettings
from incidentbot.runbooks.config import RunbookSettings
from incidentbot.runbooks.yaml_lines import format_loc
from incidentbot.scheduler.config import SchedulerSettings, check_timezone

__all__ = [
    "Channels",
    "ConfigError",
    "Duration",
    "FieldSpec",
    "HttpSettings",
    "Responders",
    "Role",
    "Settings",
    "Severity",
    "SlackSettings",
    "Status",
    "load_settings",
]

CONFIG_ENV = "INCIDENTBOT_CONFIG"
DEFAULT_CONFIG_FILE = "incidentbot.yaml"
SECRET_FIELDS = (
    "slack_bot_token",
    "slack_signing_secret",
    "slack_app_token",
    "alertmanager_token",
    "pagerduty_api_token",
    "pagerduty_webhook_secret",
    "pagerduty_routing_keys",
    "github_token",
)


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every ``path: message``."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


_yaml_data: ContextVar[dict[str, Any]] = ContextVar("incidentbot_yaml", default={})  # noqa: B039


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _yaml_data.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_data.get())


class Settings(BaseSettings):
    """Everything the bot reads at start-up. See ``docs/configuration.md``."""

    model_config = SettingsConfigDict(
        env_prefix="INCIDENTBOT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Path("data")
    database_url: str | None = None
    # Commit write transactions in groups (docs/storage.md); unset: on for SQLite only.
    group_commit: bool | None = None
    log_level: str = "INFO"
    timezone: str = "UTC"
    secrets_dir: Path | None = None

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    alertmanager_token: SecretStr | None = None
    pagerduty_api_token: SecretStr | None = None
    pagerduty_webhook_secret: SecretStr | None = None
    # Events API v2 routing keys per service, "rpc=KEY,validators=KEY": credentials, so here.
    pagerduty_routing_keys: SecretStr | None = None
    # Opens action items as GitHub issues (action_items.github_repo says where).
    github_token: SecretStr | None = None

    severities: list[Severity] = Field(default_factory=lambda: list(DEFAULT_SEVERITIES))
    statuses: list[Status] = Field(default_factory=lambda: list(DEFAULT_STATUSES))
    roles: list[Role] = Field(default_factory=lambda: list(DEFAULT_ROLES))
    channels: Channels = Field(default_factory=Channels)
    responders: Responders = Field(default_factory=Responders)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    workers: int = Field(default=4, ge=1, le=64, description="ledger worker threads in serve")
    worker_lease: float = Field(
        default=30.0,
        ge=0.5,
        le=3600,
        description="seconds a worker holds a run without renewing it; a dead worker's runs "
        "are taken over after this",
    )
    fields: list[FieldSpec] = Field(default_factory=lambda: list(DEFAULT_FIELDS))
    default_severity: str = "SEV3"
    alerts: AlertsConfig = Field(default_factory=AlertSettings)
    pagerduty: PagerDutySettings = Field(default_factory=PagerDutySettings)
    runbooks: RunbookSettings = Field(default_factory=RunbookSettings)
    postmortems: PostmortemSettings = Field(default_factory=PostmortemSettings)
    action_items: ActionItemSettings = Field(default_factory=ActionItemSettings)
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    reminders: RemindersSettings = Field(default_factory=RemindersSettings)
    impact: ImpactSettings = Field(default_factory=ImpactSettings)
    # Who is who across Slack, PagerDuty (email), GitHub and the CLI: see docs/configuration.md.
    people: list[PersonEntry] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, file_secret_settings, _YamlSource(settings_cls))

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("people")
    @classmethod
    def _people(cls, value: list[PersonEntry]) -> list[PersonEntry]:
        return validate_people(value)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        allowed = ("DEBUG", "INFO", "WARNING", "ERROR")
        if value.upper() not in allowed:
            raise ValueError(f"unknown log level {value!r}: allowed are {', '.join(allowed)}")
        return value.upper()

    @model_validator(mode="after")
    def _policy(self) -> Settings:
        problems: list[tuple[str, str]] = []
        for section, items in (
            ("severities", self.severities),
            ("statuses", self.statuses),
            ("roles", self.roles),
            ("fields", self.fields),
        ):
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item.name in seen:
                    problems.append((f"{section}[{i}].name", f"duplicate name {item.name!r}"))
                seen.add(item.name)
            if not items and section != "fields":
                problems.append((section, "must list at least one"))
        names = [s.name for s in self.statuses]
        for required in REQUIRED_STATUSES:
            if required not in names:
                problems.append(("statuses", f"missing status {required!r}, which is required"))
        for i, status in enumerate(self.statuses):
            if status.name in ("resolved", "closed") and not status.terminal:
                problems.append((f"statuses[{i}].terminal", f"{status.name!r} must be terminal"))
        if self.default_severity not in self.severity_names():
            problems.append(
                (
                    "default_severity",
                    f"{self.default_severity!r} is not a configured severity: "
                    f"allowed are {', '.join(self.severity_names())}",
                )
            )
        for name, paged in self.pagerduty.services.items():
            wanted = paged.declare_severity
            if wanted is not None and wanted not in self.severity_names():
                problems.append(
                    (
                        f"pagerduty.services.{name}.declare_severity",
                        f"{wanted!r} is not a configured severity: "
                        f"allowed are {', '.join(self.severity_names())}",
                    )
                )
        if "commander" not in [r.name for r in self.roles]:
            problems.append(("roles", "missing role 'commander', which is required"))
        problems.extend(url_problems(self))
        if problems:
            raise ValueError("\n".join(f"{path}: {msg}" for path, msg in problems))
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'incidentbot.db').resolve()}"

    def severity_names(self) -> list[str]:
        return [s.name for s in self.severities]


def format_validation_error(exc: ValidationError) -> list[str]:
    """Every problem as ``path: message`` (secrets first, then by setting)."""
    problems: list[str] = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        loc = format_loc(tuple(err.get("loc", ())))
        if err.get("type") == "extra_forbidden":
            msg = "unknown setting"
        if err.get("type") == "missing":
            msg = "is required"
        if "\n" in msg and not loc:
            problems.extend(msg.splitlines())
        else:
            problems.append(f"{loc}: {msg}" if loc else msg)
    return problems


def _find_config_file(path: str | Path | None) -> Path | None:
    if path is not None:
        return Path(path)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def read_config_file(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}not valid YAML: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["the top level must be a mapping of settings"])
    return data


def _secret_problems(data: dict[str, Any]) -> list[str]:
    return [
        f"{key}: secrets are not read from the config file; set "
        f"INCIDENTBOT_{key.upper()} or put it in the secrets directory"
        for key in SECRET_FIELDS
        if key in data
    ]


def load_settings(path: str | Path | None = None) -> Settings:
    """Load settings from the environment and the config file; raise ConfigError listing all."""
    config_path = _find_config_file(path)
    data = read_config_file(config_path) if config_path else {}
    source = str(config_path) if config_path else "configuration"
    problems = _secret_problems(data)
    data = {k: v for k, v in data.items() if k not in SECRET_FIELDS}
    token = _yaml_data.set(data)
    try:
        secrets_dir = os.environ.get("INCIDENTBOT_SECRETS_DIR") or data.get("secrets_dir")
        kwargs: dict[str, Any] = {}
        if secrets_dir:
            if not Path(secrets_dir).is_dir():
                raise ConfigError(source, [f"secrets_dir: {secrets_dir} is not a directory"])
            kwargs["_secrets_dir"] = secrets_dir
        settings = Settings(**kwargs)
    except ValidationError as exc:
        raise ConfigError(source, problems + format_validation_error(exc)) from None
    finally:
        _yaml_data.reset(token)
    if problems:
        raise ConfigError(source, problems)
    return settings
