"""The egress policy: where a runbook action may connect.

A runbook's inputs often come from people (a param typed in Slack) or alerts, so a step that
connects (``http.request``, ``rpc.*``, ``beacon.health``, the HAProxy runtime API, supervisord)
could otherwise be pointed at the host itself: the cloud metadata service, the bot's own
loopback-only endpoints, or the private network behind it.

The rule: an action connects only to public addresses over http(s), unless the operator
allows more in ``runbooks.egress``:

- ``allow``: entries of a host name (``rpc.internal``, ``*.corp.example``), an address, a CIDR
  (``10.1.0.0/16``) or ``*`` (anything), each for every action or only for some
  (``actions: [rpc.*]``);
- ``sockets``: the unix sockets actions may use (paths, ``*`` within one path component, or a
  directory ending in ``/`` for every socket under it).

Checked twice: :meth:`EgressPolicy.check_url` in ``plan()`` (the scheme, and a host written as
an address in any spelling; nothing is resolved), and :meth:`EgressPolicy.connect_address` at
run time, which resolves the name once, checks every address it gets and returns the one to
connect to, so a DNS answer that changes between the check and the connection cannot win.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from incidentbot.ledger.actions import PermanentError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses the name resolves to (as text), in the resolver's order.
Resolver = Callable[[str, int], list[str]]
SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
HINT = "allow it in runbooks.egress.allow"

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
# First match wins: what a forbidden address is, in words people know.
_FORBIDDEN: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_V4("169.254.169.254/32"), "link-local (cloud metadata)"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("0.0.0.0/8"), "unspecified (this host)"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("100.64.0.0/10"), "shared address space (CGNAT)"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("240.0.0.0/4"), "reserved"),
    (_V6("fd00:ec2::254/128"), "unique-local (cloud metadata)"),
    (_V6("::1/128"), "loopback"),
    (_V6("::/128"), "unspecified (this host)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fc00::/7"), "unique-local (private)"),
    (_V6("fec0::/10"), "site-local (private)"),
    (_V6("ff00::/8"), "multicast"),
)
LOCALHOST = ipaddress.IPv4Address("127.0.0.1")
_NAT64 = _V6("64:ff9b::/96")
_COMPATIBLE = _V6("::/96")
_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
_NUMBER = re.compile(r"^(?:0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")


class EgressRefused(PermanentError):
    """A connection the egress policy does not allow (retrying cannot help)."""


class EgressRule(BaseModel):
    """One ``runbooks.egress.allow`` entry: ``to`` (a host name, ``*.suffix``, an address, a
    CIDR, or ``*``) for the actions matching ``actions`` (default: all). A bare string is
    ``to`` for every action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str
    actions: list[str] = Field(default_factory=lambda: ["*"], min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"to": value} if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        text = value.strip().lower().rstrip(".")
        if not text:
            raise ValueError("give a host name, an address, a CIDR or *")
        if text == "*" or _network(text) is not None:
            return text
        name = text.removeprefix("*.")
        if not _HOSTNAME.fullmatch(name):
            raise ValueError(
                f"{value!r} is not a host name, *.domain, an address, a CIDR (10.0.0.0/8) or *"
            )
        return text

    def covers_action(self, action: str) -> bool:
        return any(fnmatch.fnmatchcase(action, pattern) for pattern in self.actions)

    def covers(self, host: str, address: IPAddress | None) -> bool:
        if self.to == "*":
            return True
        network = _network(self.to)
        if network is not None:
            return address is not None and any(
                a.version == network.version and a in network for a in _forms(address)
            )
        name = host.lower().rstrip(".")
        if self.to.startswith("*."):
            return name.endswith(self.to[1:])
        return name == self.to


class EgressSettings(BaseModel):
    """``runbooks.egress``: what actions may reach beyond public http(s) addresses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[EgressRule] = Field(
        default_factory=list,
        description="hosts, addresses or CIDRs (optionally per action) that actions may "
        "connect to although they are loopback, private, link-local, ...",
    )
    sockets: list[str] = Field(
        default_factory=list,
        description="unix sockets actions may connect to: absolute paths (* matches within "
        "one path component), or directories ending in / (every socket under them)",
    )

    @field_validator("sockets")
    @classmethod
    def _sockets(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/") or "\0" in path:
                raise ValueError(f"{path!r} is not an absolute socket path")
        # A trailing / (a directory: everything under it) survives normalisation.
        return [os.path.normpath(p) + ("/" if p.endswith("/") and p != "/" else "") for p in value]


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (``socket.gaierror`` when it does not)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


@dataclass(frozen=True)
class EgressPolicy:
    """The policy as actions use it: ``settings`` plus the resolver (tests may give one)."""

    settings: EgressSettings = field(default_factory=EgressSettings)
    resolve: Resolver = system_resolve

    def _allowed(self, action: str, host: str, address: IPAddress | None) -> bool:
        return any(
            rule.covers_action(action) and rule.covers(host, address)
            for rule in self.settings.allow
        )

    def check_url(self, action: str, url: str) -> None:
        """Plan-time check of ``url`` (nothing resolved): the scheme, and a host that is an
        address in any spelling, or ``localhost``. Raises :class:`EgressRefused`."""
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in SCHEMES:
            raise EgressRefused(
                f"the {parts.scheme or 'missing'} scheme is not allowed by the egress policy "
                "(only http and https)"
            )
        self.check_host(action, parts.hostname or "")

    def check_host(self, action: str, host: str) -> None:
        """Plan-time check of a host (nothing resolved): refused when it is an address in any
        spelling that is not public, or ``localhost``, and the policy does not allow it."""
        address = parse_address(host)
        name = host.lower().rstrip(".")
        if address is None and (name == "localhost" or name.endswith(".localhost")):
            address = LOCALHOST  # RFC 6761: always loopback, known without asking DNS
        if address is not None:
            self._check(action, host, address, resolved=False)

    def connect_address(self, action: str, host: str, port: int) -> str:
        """Resolve ``host`` once, check every address, and return the one to connect to.

        Raises :class:`EgressRefused` when any address is forbidden and not allowed (a name
        with one private address among public ones is refused: which one a connection would
        use is up to chance), and ``socket.gaierror`` when the name does not resolve."""
        literal = parse_address(host)
        if literal is not None:
            self._check(action, host, literal, resolved=False)
            return str(literal)
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self.resolve(host, port)]
        if not addresses:
            raise socket.gaierror(f"{host} resolves to no address")
        for address in addresses:
            self._check(action, host, address, resolved=True)
        return str(addresses[0])

    def _check(self, action: str, host: str, address: IPAddress, *, resolved: bool) -> None:
        found = _forbidden(address)
        if found is None or self._allowed(action, host, address):
            return
        form, why = found
        carried = f" ({form})" if form != address else ""
        if resolved:
            what = f"{host} resolves to {address}{carried}, which"
        elif host.strip("[]").lower() != str(form):
            what = f"{host} ({form})"
        else:
            what = str(form)
        raise EgressRefused(f"{what} is {why}: not allowed by the egress policy ({HINT})")

    def check_socket(self, action: str, path: str, *, real: bool = False) -> None:
        """A unix socket is allowed only when ``runbooks.egress.sockets`` lists it. ``real``
        (run time) also checks the path with symbolic links resolved."""
        shown = os.path.normpath(os.path.abspath(path))
        paths = [shown, os.path.realpath(shown)] if real else [shown]
        if all(any(_path_matches(p, pattern) for pattern in self.settings.sockets) for p in paths):
            return
        raise EgressRefused(
            f"unix socket {shown} is not allowed by the egress policy (list it in "
            "runbooks.egress.sockets)"
        )


def _path_matches(path: str, pattern: str) -> bool:
    if pattern.endswith("/"):  # a directory: every socket under it
        return path.startswith(pattern)
    have, want = path.split("/"), pattern.split("/")
    return len(have) == len(want) and all(
        fnmatch.fnmatchcase(h, w) for h, w in zip(have, want, strict=True)
    )


def policy_of(services: Any) -> EgressPolicy:
    """The policy for a step: the services' own (``services.egress``), else the settings'
    ``runbooks.egress``, else the default (public http(s) addresses only)."""
    given = getattr(services, "egress", None)
    if isinstance(given, EgressPolicy):
        return given
    runbooks = getattr(getattr(services, "settings", None), "runbooks", None)
    configured = getattr(runbooks, "egress", None)
    return EgressPolicy(configured if isinstance(configured, EgressSettings) else EgressSettings())


def forbidden_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public address (None when it is one). An IPv6 form that
    carries an IPv4 address (mapped, compatible, NAT64, 6to4) is judged by that address."""
    found = _forbidden(address)
    return found[1] if found else None


def _forbidden(address: IPAddress) -> tuple[IPAddress, str] | None:
    """The form of ``address`` that is forbidden and why, or None."""
    forms = _forms(address)
    for form in reversed(forms):  # the carried IPv4 address first: its name is clearer
        for network, why in _FORBIDDEN:
            if form.version == network.version and form in network:
                return form, why
    for form in forms:
        if not form.is_global:
            return form, "special-purpose (not globally routable)"
    return None


def _forms(address: IPAddress) -> Sequence[IPAddress]:
    """``address`` and the IPv4 address an IPv6 address carries, if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return (address,)
    inner: ipaddress.IPv4Address | None = address.ipv4_mapped or address.sixtofour
    if inner is None and (address in _NAT64 or (address in _COMPATIBLE and int(address) > 1)):
        inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return (address, inner) if inner is not None else (address,)


def parse_address(host: str) -> IPAddress | None:
    """``host`` as an address, in every spelling a resolver accepts: IPv6 (brackets, a zone),
    dotted IPv4 and the forms ``inet_aton`` reads (``2852039166``, ``0xa9fea9fe``,
    ``0251.0376.0251.0376``, ``127.1``). None for a host name."""
    text = host.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMBER.match(p) for p in parts):
        return None
    values = [_number(p) for p in parts]
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    number = number * 256 ** (5 - len(values)) + last
    return ipaddress.IPv4Address(number)


def _number(part: str) -> int:
    """One part of an ``inet_aton`` address: hexadecimal (0x), octal (leading 0), decimal."""
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if part.startswith("0"):
        return int(part, 8)
    return int(part)


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        return None
