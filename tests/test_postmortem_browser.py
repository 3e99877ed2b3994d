"""The postmortem HTML in a real browser: headless Chromium loads the standalone page, its DOM
has every section, a screenshot is a real image and printing gives a multi-page PDF.

The screenshot, the PDF and the page are kept in ``artifacts/`` (ignored by git) for a person
to look at. Without Chromium (Debian package ``chromium``; ``scripts/test`` installs it) the
test is skipped with a message, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from incidentbot import db
from incidentbot.incidents import service as svc
from incidentbot.postmortems.render import render
from tests.postmortem_scenario import (
    build_incident,
    controlled_clock,
    effect_server,
    scenario_settings,
)

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
WIDTH, HEIGHT = 1200, 3000
SECTIONS = {
    "summary": "Summary",
    "impact": "Impact",
    "trigger": "Trigger",
    "detection": "Detection",
    "resolution": "Resolution",
    "severity-history": "Severity history",
    "metrics": "Metrics",
    "participants": "Participants and roles",
    "timeline": "Timeline",
    "actions-taken": "Actions taken",
    "what-went-well": "What went well",
    "what-went-wrong": "What went wrong",
    "where-we-got-lucky": "Where we got lucky",
    "contributing-factors": "Contributing factors",
    "language-check": "Language check",
    "action-items": "Action items",
    "links": "Supporting links",
}


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("CI needs headless Chromium (apt-get install chromium)")
    pytest.skip("postmortem browser test skipped: no chromium (apt-get install chromium)")


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


class Outline(HTMLParser):
    """Section ids with their h2 text, and all the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, str] = {}
        self.text: list[str] = []
        self._section: str | None = None
        self._in_h2 = False
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._skip += 1
        if tag == "section":
            self._section = dict(attrs).get("id")
        if tag == "h2":
            self._in_h2 = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip -= 1
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        if self._in_h2 and self._section:
            self.sections[self._section] = self.sections.get(self._section, "") + data


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the raw (filtered) scanlines of a PNG; asserts it is well formed."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def test_the_page_renders_in_chromium(sqlite_template, tmp_path):
    binary = chromium()
    path = tmp_path / "incidentbot.db"
    path.write_bytes(sqlite_template.read_bytes())
    engine = db.make_engine(f"sqlite:///{path}")
    try:
        with effect_server() as srv, controlled_clock() as clock:
            settings = scenario_settings(tmp_path, srv.url)
            sc = build_incident(engine, settings, clock)
        with db.transaction(engine) as s:
            page = render(s, settings, svc.get(s, sc.ref), "html").text
    finally:
        engine.dispose()
    ARTIFACTS.mkdir(exist_ok=True)
    html = ARTIFACTS / "postmortem.html"
    html.write_text(page, encoding="utf-8")
    url = html.as_uri()
    profile = tmp_path / "chromium-profile"

    dom = run_chromium(binary, profile, "--dump-dom", url).stdout
    outline = Outline()
    outline.feed(dom)
    assert outline.sections == SECTIONS
    text = " ".join(" ".join(outline.text).split())
    assert "Postmortem: INC-1 Public RPC serves stale blocks on mainnet" in text
    assert "Runbook failover-rpc, run 2: succeeded" in text
    assert "api_key=***" in text and "lb-admin-9f8e7d6c5b4a3921" not in text
    assert "“human error”" in text

    png = ARTIFACTS / "postmortem.png"
    png.unlink(missing_ok=True)
    run_chromium(binary, profile, f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={png}", url)
    data = png.read_bytes()
    width, height, raw = png_pixels(data)
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(data) > 50_000, "the screenshot is suspiciously small"
    rows = [raw[i * (len(raw) // height) + 1 : (i + 1) * (len(raw) // height)] for i in (0, 400)]
    assert len(set(raw[: len(raw) // 2])) > 16, "the screenshot is (nearly) one colour"
    assert rows[0] != rows[1]

    pdf = ARTIFACTS / "postmortem.pdf"
    pdf.unlink(missing_ok=True)
    run_chromium(binary, profile, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", url)
    printed = pdf.read_bytes()
    assert printed.startswith(b"%PDF-")
    pages = printed.count(b"/Type /Page") - printed.count(b"/Type /Pages")
    assert pages >= 3, f"the printed postmortem has {pages} page(s)"
