"""``GET /runs/<id>?sig=…``: one runbook run's steps with their full (masked) output.

The run message in Slack links here when ``http.public_url`` is set. The link is signed
(:mod:`incidentbot.run_links`), so only someone who saw the message can open it; everything
shown is what the run stored, already masked.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence

from jinja2 import Environment, select_autoescape
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from incidentbot import db
from incidentbot.errors import DomainError
from incidentbot.people import Directory
from incidentbot.people.config import PersonEntry
from incidentbot.people.render import event_text, ids_in
from incidentbot.run_links import signature
from incidentbot.runbooks import view as views
from incidentbot.runbooks.definition import format_seconds

_TEMPLATE = Environment(autoescape=select_autoescape(default=True)).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Run {{ v.run_id }}: {{ v.runbook }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}
pre{background:#f4f4f4;padding:.6rem;white-space:pre-wrap;word-break:break-word}
.failed,.unknown{color:#b00}.done{color:#070}
</style></head><body>
<h1>Runbook {{ v.runbook }} · run {{ v.run_id }} · {{ v.status.replace("_", " ") }}</h1>
<p>{{ v.description }}</p>
<p>Requested by {{ who(v.requester) }}{% if v.incident_ref %} for {{ v.incident_ref }}{% endif %}
{% if v.target %} · target {{ v.target }}{% endif %} · {{ elapsed }}</p>
{% if v.params %}<p>Params:
{% for k, val in v.params.items() %}{{ k }}={{ val }} {% endfor %}</p>{% endif %}
{% if v.error %}<p class="failed">{{ who(v.error) }}</p>{% endif %}
{% for s in v.steps %}
<h2 class="{{ s.status }}">{{ loop.index }}. {{ s.label }}: {{ s.status }}</h2>
{% if s.attempts %}<p>{{ s.attempts }} attempt(s)</p>{% endif %}
{% if s.error %}<pre>{{ who(s.error) }}</pre>{% endif %}
{% if s.status == "done" and s.detail %}<p class="said">{{ who(s.detail) }}</p>{% endif %}
{% if s.output %}<pre>{{ outputs[loop.index0] }}</pre>{% endif %}
{% endfor %}
</body></html>
"""
)


def route(engine: Engine, key: bytes, people: Sequence[PersonEntry] = ()) -> Route:
    """The page; ``people`` (the ``people`` settings) name who requested or cancelled a run."""

    async def page(request: Request) -> Response:
        try:
            run_id = int(request.path_params["run_id"])
        except ValueError:
            return Response("no such run", status_code=404)
        given = request.query_params.get("sig", "")
        if not hmac.compare_digest(given, signature(key, run_id)):
            return Response("this link is not valid", status_code=403)
        html = await run_in_threadpool(_render, engine, run_id, people)
        if html is None:
            return Response("no such runbook run", status_code=404)
        return HTMLResponse(html)

    return Route("/runs/{run_id}", page, methods=["GET"])


def _render(engine: Engine, run_id: int, people: Sequence[PersonEntry] = ()) -> str | None:
    try:
        with db.transaction(engine) as s:
            v = views.load(s, run_id)
            texts = [v.error or "", *(st.error or "" for st in v.steps)]
            named = [v.requester, *(u for u, _ in v.approvals)]
            named += [i for t in [*texts, *(st.detail for st in v.steps)] for i in ids_in(t)]
            directory = Directory.load(s, people, named)
    except DomainError:
        return None

    def who(text: str | None) -> str:
        """People by name: the run's requester, and Slack ids in its messages."""
        return event_text(text or "", {"people": [p for p in named if p]}, directory)

    outputs = [json.dumps(s.output, indent=2, sort_keys=True, default=str) for s in v.steps]
    return _TEMPLATE.render(v=v, who=who, outputs=outputs, elapsed=format_seconds(round(v.elapsed)))
