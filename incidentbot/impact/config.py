"""The ``impact`` section of the settings: where chain impact is read from, and how often.

Imported by :mod:`incidentbot.config`; must not import it back.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ImpactSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    beacon_url: SecretStr | None = Field(
        default=None,
        description="Beacon API base URL the samples are read from (it may carry a key); "
        "unset: no sampling",
    )
    every: float = Field(
        default=384.0,
        ge=1,
        le=86400,
        description="seconds between samples (384: one mainnet epoch); one timeline entry per "
        "incident and epoch whatever the cadence",
    )
    validators_field: str = Field(
        default="validators",
        pattern=r"^[a-z][a-z_]*$",
        description="the incident field listing the validators affected (e.g. 4-7,12)",
    )
    timeout: float = Field(default=5.0, gt=0, le=60, description="per Beacon API request")
