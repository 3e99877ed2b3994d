"""What the shipped validator actions do to a key set, for the double-sign interlock.

The actions live in :mod:`incidentbot.runbooks.actions.web3`; the interlock
(:mod:`incidentbot.runbooks.keyguard`) reads these class attributes. They name their client by
supervisord program (``validator.stop``, ``validator.start``) or by data directory (the
slashing-protection commands): ``validator.protection_import`` takes both, which ties a
target's program to its data directory.
"""

from __future__ import annotations

from incidentbot.runbooks.actions.web3.validator_clients import ValidatorStart, ValidatorStop
from incidentbot.runbooks.actions.web3.validator_protection import (
    ValidatorProtectionImport,
    ValidatorProtectionVerify,
)

DECLARED = {
    ValidatorStop: {"proves_stopped": True, "key_set_input": "indices", "client_input": "program"},
    ValidatorStart: {"signs": True, "key_set_input": "indices", "client_input": "program"},
    ValidatorProtectionImport: {
        "imports_protection": True,
        "key_set_input": None,
        "client_input": ("program", "data_dir"),
    },
    ValidatorProtectionVerify: {
        "verifies_protection": True,
        "key_set_input": None,
        "client_input": "data_dir",
    },
}


def declare() -> None:
    """Set the attributes (idempotent); an action class that already sets one keeps its own."""
    for cls, attributes in DECLARED.items():
        for name, value in attributes.items():
            if name not in vars(cls):
                setattr(cls, name, value)


declare()
