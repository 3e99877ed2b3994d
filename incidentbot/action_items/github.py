"""Opening an action item as a GitHub issue, through GitHub's REST API.

``POST {api}/repos/{owner}/{repo}/issues`` with the token from ``INCIDENTBOT_GITHUB_TOKEN``.
An item is exported once: its ``external_url`` is set in the same transaction as the
``action.exported`` timeline event, and a second export answers with that URL instead of
opening another issue. Before asking GitHub an export claims the item (``export_started_at``),
so an export from another process meanwhile is refused rather than opening a second issue;
exports in one process run one at a time, so a double-submitted command waits and answers
with the URL. A refused or failed request (401, 404, 422, 5xx, no answer)
raises :class:`ExportError` with what to do about it and changes nothing here.

What goes to GitHub passes through :func:`~incidentbot.ledger.redact.redact_text` first: a key
pasted into an item's text is masked before it leaves.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from incidentbot import __version__, db
from incidentbot.action_items import fields as item_fields
from incidentbot.action_items import service as items
from incidentbot.clock import utcnow
from incidentbot.config import Settings
from incidentbot.errors import DomainError
from incidentbot.incidents.models import ActionItem, Incident
from incidentbot.ledger.redact import redact_text
from incidentbot.people import Directory

if TYPE_CHECKING:  # imported on the first export: the bot starts without the HTTP client
    import httpx

API_VERSION = "2022-11-28"
MAX_TITLE = 256  # GitHub refuses longer issue titles
CLAIM_SLACK = 30.0  # seconds an export may take beyond the client's timeout (connect, record)
_export_lock = threading.Lock()


class ExportError(DomainError):
    """GitHub refused or did not answer; nothing was recorded."""


@dataclass(frozen=True)
class Issue:
    number: int
    url: str


@dataclass(frozen=True)
class Draft:
    item_id: int
    incident_ref: str
    title: str
    body: str
    labels: list[str]


@dataclass(frozen=True)
class Exported:
    item_id: int
    incident_ref: str
    url: str
    created: bool  # False: it was already exported, and ``url`` is where


class GitHubIssues:
    """Creates issues in one repository."""

    def __init__(
        self,
        token: str,
        repo: str,
        *,
        api_url: str = "https://api.github.com",
        timeout: float = 10.0,
    ):
        self.repo = repo
        self.api_url = api_url.rstrip("/")
        import httpx

        self._client = httpx.Client(
            base_url=self.api_url,
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": f"incidentbot/{__version__}",
            },
        )
        self._timeout = timeout

    def close(self) -> None:
        self._client.close()

    def create(self, title: str, body: str, labels: list[str]) -> Issue:
        path = f"/repos/{self.repo}/issues"
        payload = {"title": title, "body": body, "labels": labels}
        import httpx

        try:
            response = self._client.post(path, json=payload)
        except httpx.TimeoutException:
            raise ExportError(
                f"GitHub did not answer within {self._timeout:g}s, so the issue may or may not "
                f"have been created: look in {self.repo}'s issues before exporting again; "
                "nothing was recorded here"
            ) from None
        except httpx.HTTPError as exc:
            raise ExportError(
                f"could not reach GitHub at {self.api_url} ({type(exc).__name__}): "
                "nothing changed; try again"
            ) from None
        if response.status_code == 201:
            return _issue(response)
        raise ExportError(_refusal(response, self.repo))


def _issue(response: httpx.Response) -> Issue:
    try:
        data = response.json()
        return Issue(number=int(data["number"]), url=str(data["html_url"]))
    except (ValueError, KeyError, TypeError):
        raise ExportError(
            "GitHub answered 201 without an issue number and URL: the issue may exist; "
            "look in the repository before exporting again"
        ) from None


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if not isinstance(data, dict):
        return str(data)[:200]
    message = str(data.get("message") or response.reason_phrase)
    details = []
    for err in data.get("errors") or []:
        if isinstance(err, dict):
            what = err.get("message") or " ".join(
                str(err[k]) for k in ("resource", "field", "code") if err.get(k)
            )
            details.append(str(what))
        else:
            details.append(str(err))
    return message + (f": {'; '.join(details)}" if details else "")


def _refusal(response: httpx.Response, repo: str) -> str:
    status, message = response.status_code, _message(response)
    nothing = "nothing changed"
    if status == 401:
        return (
            f"GitHub refused the token (401 {message}): check INCIDENTBOT_GITHUB_TOKEN; {nothing}"
        )
    remaining = response.headers.get("x-ratelimit-remaining")
    if status in (403, 429) and (remaining == "0" or "rate limit" in message.lower()):
        reset = response.headers.get("x-ratelimit-reset", "")
        when = ""
        if reset.isdigit():
            when = f" until {datetime.fromtimestamp(int(reset), UTC):%H:%M} UTC"
        return f"GitHub's rate limit is reached{when} ({status} {message}); {nothing}"
    if status == 403:
        return (
            f"GitHub refused to create an issue in {repo} (403 {message}): the token needs "
            f"permission to write issues there; {nothing}"
        )
    if status == 404:
        return (
            f"GitHub has no repository {repo} that this token can see (404 {message}): check "
            f"action_items.github_repo and the token's repository access; {nothing}"
        )
    if status == 410:
        return f"issues are disabled in {repo} (410 {message}); {nothing}"
    if status == 422:
        return f"GitHub refused the issue (422 {message}); {nothing}"
    if status >= 500:
        return f"GitHub failed ({status} {message}); {nothing}: try again later"
    return f"GitHub answered {status} ({message}); {nothing}"


# -- exporting an item -------------------------------------------------------------------------


def _configured(settings: Settings) -> tuple[str, str]:
    """The repository and the token, or a DomainError saying what is missing."""
    repo = settings.action_items.github_repo
    if not repo:
        raise DomainError(
            "exporting to GitHub is not configured: set action_items.github_repo (owner/name)"
        )
    token = settings.github_token.get_secret_value() if settings.github_token else ""
    if not token:
        raise DomainError("INCIDENTBOT_GITHUB_TOKEN is not set: exporting to GitHub needs it")
    return repo, token


def client_for(settings: Settings) -> GitHubIssues:
    """The client the settings describe, or a DomainError saying what is missing."""
    repo, token = _configured(settings)
    cfg = settings.action_items
    return GitHubIssues(token, repo, api_url=cfg.github_api_url, timeout=cfg.timeout)


def prepare(
    session: Session,
    settings: Settings,
    item_id: str | int,
    *,
    incident: Incident | None = None,
) -> Draft | Exported:
    """Check that the item can be exported and build its issue, or say where it already is."""
    item = items.get(session, item_id, incident=incident)
    inc = session.get(Incident, item.incident_id)
    assert item.id is not None and inc is not None
    if item.external_url:
        return Exported(item.id, inc.ref, item.external_url, created=False)
    if item.status != item_fields.OPEN:
        raise DomainError(
            f"action item #{item.id} is {item_fields.label(item.status)}: only open items are "
            "exported; reopen it first"
        )
    _configured(settings)  # refuses here, before anything is said to be under way
    people = Directory.load(session, settings.people, [item.owner, item.created_by])
    return _draft(settings, item, inc, people)


def _person(people: Directory, actor: str) -> str:
    """A person in the issue: their name, and their GitHub login when the directory knows it
    (GitHub then links the issue to them)."""
    someone = people.find(actor)
    if someone is not None and someone.github:
        return f"{someone.name} (@{someone.github})"
    return people.name(actor)


def _draft(settings: Settings, item: ActionItem, inc: Incident, people: Directory) -> Draft:
    assert item.id is not None
    title = redact_text(item.text)
    if len(title) > MAX_TITLE:
        title = title[: MAX_TITLE - 1] + "…"
    rows = [
        ("Incident", f"{inc.ref} ({inc.severity}, {inc.status}): {inc.title}"),
        ("Priority", item.priority),
        ("Due", item.due_date.isoformat() if item.due_date else "not set"),
        ("Owner", _person(people, item.owner) if item.owner else "nobody yet"),
        ("Added by", _person(people, item.created_by)),
    ]
    if inc.channel_name:
        rows.append(("Slack channel", f"#{inc.channel_name}"))
    table = "\n".join(f"| {k} | {redact_text(v).replace('|', '/')} |" for k, v in rows)
    body = (
        f"Follow-up from incident **{inc.ref}**.\n\n"
        f"> {redact_text(item.text)}\n\n"
        f"| | |\n|---|---|\n{table}\n\n"
        f"_Action item #{item.id} in incidentbot. Closing this issue does not close the item "
        f"there: run `incidentbot actions done {item.id}`._\n"
    )
    values = {"priority": item.priority, "severity": inc.severity}
    labels = list(dict.fromkeys(lbl.format(**values) for lbl in settings.action_items.labels))
    return Draft(item.id, inc.ref, title, body, labels)


def export(
    engine: Engine,
    settings: Settings,
    item_id: str | int,
    *,
    actor: str,
    incident: Incident | None = None,
    client: GitHubIssues | None = None,
    now: datetime | None = None,
    again: bool = False,
) -> Exported:
    """Open the item as a GitHub issue, once; the second time, say where it is.

    The export is claimed on the item first (``export_started_at``), so a second process
    exporting it meanwhile is told to wait instead of opening another issue. A claim left by a
    process that died while asking GitHub refuses further exports until someone has looked in
    the repository and exports ``again``."""
    with _export_lock:
        with db.transaction(engine) as s:
            draft = prepare(s, settings, item_id, incident=incident)
            if isinstance(draft, Exported):
                return draft
            _claim(s, settings, draft.item_id, actor, now or utcnow(), again=again)
        own = client is None
        gh = client or client_for(settings)
        try:
            issue = gh.create(draft.title, draft.body, draft.labels)
        except ExportError:
            # Refused, or no usable answer (the message says to look before trying again):
            # either way this export is over and the user knows what to do.
            with db.transaction(engine) as s:
                _unclaim(s, draft.item_id)
            raise
        finally:
            if own:
                gh.close()
        try:
            with db.transaction(engine) as s:
                item = items.get(s, draft.item_id, for_update=True)
                if item.external_url:
                    raise ExportError(
                        f"action item #{item.id} was exported to {item.external_url} meanwhile; "
                        f"the issue just opened, {issue.url}, is a duplicate: close it"
                    )
                item.export_started_at = item.export_started_by = None
                items.mark_exported(
                    s,
                    item,
                    issue.url,
                    actor=actor,
                    now=now or utcnow(),
                    data={"issue": issue.number, "repo": gh.repo},
                )
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(
                f"the issue {issue.url} was opened but recording it failed "
                f"({type(exc).__name__}): note it before exporting #{draft.item_id} again"
            ) from exc
        return Exported(draft.item_id, draft.incident_ref, issue.url, created=True)


def _claim(
    session: Session, settings: Settings, item_id: int, actor: str, now: datetime, *, again: bool
) -> None:
    item = items.get(session, item_id, for_update=True)
    started, by = item.export_started_at, item.export_started_by or "someone"
    if started is not None:
        # An export under way answers within the client's timeout.
        under_way = (now - started).total_seconds() < settings.action_items.timeout + CLAIM_SLACK
        at = f"{started:%Y-%m-%d %H:%M:%S} UTC"
        if under_way:
            raise ExportError(
                f"action item #{item_id} is being exported (by {by}, since {at}): its issue "
                "shows here once GitHub answers"
            )
        if not again:
            repo = settings.action_items.github_repo
            raise ExportError(
                f"an export of action item #{item_id} by {by} at {at} did not finish, so its "
                f"issue may exist: look in {repo}'s issues; if there is none, export it again "
                f"with `incidentbot actions export {item_id} --again`"
            )
    item.export_started_at, item.export_started_by = now, actor[:128]
    session.add(item)


def _unclaim(session: Session, item_id: int) -> None:
    item = items.get(session, item_id, for_update=True)
    item.export_started_at = item.export_started_by = None
    session.add(item)


def describe(result: Exported) -> dict[str, Any]:
    return {
        "item": result.item_id,
        "incident": result.incident_ref,
        "url": result.url,
        "created": result.created,
    }
