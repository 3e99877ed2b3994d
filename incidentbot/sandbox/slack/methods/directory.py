"""Who is who: auth.test, users.info / lookupByEmail / list, usergroups.list / users.list."""

from __future__ import annotations

from typing import Any

from incidentbot.sandbox.slack.methods import Args, method, paginate
from incidentbot.sandbox.slack.models import SlackError, User
from incidentbot.sandbox.slack.workspace import Workspace


@method("auth.test")
def auth_test(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    out: dict[str, Any] = {
        "url": f"https://{ws.domain}.slack.com/",
        "team": ws.team_name,
        "user": caller.name,
        "team_id": ws.team_id,
        "user_id": caller.id,
        "is_enterprise_install": False,
    }
    if caller.bot_id:
        out["bot_id"] = caller.bot_id
    return out


@method("users.info")
def users_info(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    user = ws.users.get(args.str("user") or "")
    if user is None:
        raise SlackError("user_not_found")
    return {"user": user.to_api()}


@method("users.lookupByEmail")
def users_lookup_by_email(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    email = (args.str("email") or "").strip().lower()
    for user in ws.users.values():
        if user.email and user.email.lower() == email:
            return {"user": user.to_api()}
    raise SlackError("users_not_found")


@method("users.list")
def users_list(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    page, cursor = paginate([u.to_api() for u in ws.users.values()], args, default_limit=200)
    return {
        "members": page,
        "cache_ts": int(ws.clock()),
        "response_metadata": {"next_cursor": cursor},
    }


@method("usergroups.list")
def usergroups_list(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    include_users = args.bool("include_users")
    include_count = args.bool("include_count")
    return {
        "usergroups": [
            group.to_api(include_users, include_count) for group in ws.usergroups.values()
        ]
    }


@method("usergroups.users.list")
def usergroups_users_list(ws: Workspace, caller: User, args: Args) -> dict[str, Any]:
    group = ws.usergroups.get(args.str("usergroup") or "")
    if group is None:
        raise SlackError("no_such_subteam")
    return {"users": list(group.users)}
