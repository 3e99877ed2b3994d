"""``serve`` does not check again the runbook files that passed the check at an earlier start
(same text, same checking code), and what it reports about the others is what it reported
without the cache: a changed file is checked again, a bad file is reported at every start."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import incidentbot
from incidentbot.bot import Bot
from incidentbot.config import Settings
from incidentbot.runbooks.actions import Action, ActionRegistry
from incidentbot.runbooks.actions import registry as builtin_registry
from incidentbot.runbooks.check_cache import FILE_NAME, CheckCache
from incidentbot.runbooks.loader import Catalog, load_dirs

SHIPPED = Path(__file__).resolve().parents[1] / "runbooks"

# An expression reading a param the runbook does not have: only the full check finds it (the
# model itself takes any text).
UNKNOWN_PARAM = "{{ params.nodes }}"


class CountingRegistry:
    """The bot's own action registry, counting how often the check asks it for an action."""

    def __init__(self) -> None:
        self.asked = 0

    def get(self, name: str) -> Action | None:
        self.asked += 1
        return builtin_registry.get(name)

    def names(self) -> list[str]:
        return builtin_registry.names()


def shipped_copy(tmp_path: Path) -> Path:
    directory = tmp_path / "runbooks"
    shutil.copytree(SHIPPED, directory)
    return directory


def load(directory: Path | list[Path], data: Path, registry: CountingRegistry) -> Catalog:
    """A load as ``serve`` does it, with the check results of ``data``; counts from zero."""
    cache = CheckCache.open(data, registry)
    registry.asked = 0
    dirs = directory if isinstance(directory, list) else [directory]
    return load_dirs(dirs, registry, cache=cache)


def dumped(catalog: Catalog) -> dict[str, object]:
    return {rb.name: rb.model_dump(mode="json") for rb in catalog.runbooks}


def test_a_file_that_passed_is_read_as_before_without_being_checked_again(tmp_path):
    directory, data, registry = shipped_copy(tmp_path), tmp_path / "data", CountingRegistry()
    unchecked = load_dirs([directory], builtin_registry)
    assert unchecked.problems == [] and len(unchecked.runbooks) >= 6

    first = load(directory, data, registry)
    assert registry.asked > 0  # every file checked: nothing was kept yet
    assert (data / FILE_NAME).exists()
    second = load(directory, data, registry)
    assert registry.asked == 0  # nothing checked again
    assert second.problems == [] and second.files == unchecked.files
    assert dumped(second) == dumped(first) == dumped(unchecked)
    assert [second.source_of(n) for n in second.names()] == [
        unchecked.source_of(n) for n in unchecked.names()
    ]


def test_a_changed_file_is_checked_again_and_its_problems_reported(tmp_path):
    directory, data, registry = shipped_copy(tmp_path), tmp_path / "data", CountingRegistry()
    load(directory, data, registry)
    path = directory / "http-check.yaml"
    good = path.read_text(encoding="utf-8")
    assert "{{ params.url }}" in good
    path.write_text(good.replace("{{ params.url }}", UNKNOWN_PARAM, 1), encoding="utf-8")
    expected = load_dirs([directory], builtin_registry).problems
    assert expected and all(p.file == str(path) for p in expected)
    assert any("nodes" in p.message for p in expected)

    for _ in range(2):  # a bad file is never taken as checked: reported at every start
        catalog = load(directory, data, registry)
        assert catalog.problems == expected
        assert registry.asked > 0
        assert "http-check" not in catalog.names()
        assert len(catalog.runbooks) == len(load_dirs([SHIPPED], builtin_registry).runbooks) - 1

    path.write_text(good, encoding="utf-8")  # put back: checked, and kept, once more
    for asked in (True, False):
        catalog = load(directory, data, registry)
        assert catalog.problems == [] and "http-check" in catalog.names()
        assert (registry.asked > 0) is asked


def test_a_bad_runbook_is_reported_at_every_start_as_without_the_cache(tmp_path):
    directory, data, registry = tmp_path / "rb", tmp_path / "data", CountingRegistry()
    directory.mkdir()
    shutil.copyfile(SHIPPED / "announce.yaml", directory / "announce.yaml")
    (directory / "bad.yaml").write_text(
        "name: bad\nsteps:\n  - id: a\n    uses: no.such.action\n  - id: a\n    uses: wait.sleep\n",
        encoding="utf-8",
    )
    (directory / "broken.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    expected = load_dirs([directory], builtin_registry).problems
    assert {p.file for p in expected} == {
        str(directory / "bad.yaml"),
        str(directory / "broken.yaml"),
    }
    for _ in range(3):
        catalog = load(directory, data, registry)
        assert catalog.problems == expected
        assert catalog.names() == ["announce"]


def test_a_name_taken_by_a_new_file_is_still_refused_for_both(tmp_path):
    data, registry = tmp_path / "data", CountingRegistry()
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    shutil.copyfile(SHIPPED / "announce.yaml", first / "announce.yaml")
    assert load(first, data, registry).names() == ["announce"]
    shutil.copyfile(SHIPPED / "announce.yaml", second / "announce.yaml")
    catalog = load([first, second], data, registry)
    assert catalog.names() == []
    assert sorted(p.file for p in catalog.problems) == [
        str(first / "announce.yaml"),
        str(second / "announce.yaml"),
    ]
    assert all("is also used by" in p.message for p in catalog.problems)


def test_new_checking_code_checks_every_file_again(tmp_path, monkeypatch):
    directory, data, registry = shipped_copy(tmp_path), tmp_path / "data", CountingRegistry()
    load(directory, data, registry)
    monkeypatch.setattr(incidentbot, "__version__", incidentbot.__version__ + ".post1")
    assert load(directory, data, registry).problems == []
    assert registry.asked > 0


def test_an_action_pack_taking_part_in_the_check_is_part_of_what_was_checked(tmp_path):
    """An action registered from outside the bot (a pack): its code is in the fingerprint."""

    class Probe(Action):
        name = "lab.probe"

    class ProbeAgain(Action):
        name = "lab.probe"
        description = "another class under the same name"

    data = tmp_path / "data"
    one, other = ActionRegistry([Probe]), ActionRegistry([ProbeAgain])
    assert (
        CheckCache.open(data, one).fingerprint
        == CheckCache.open(data, ActionRegistry([Probe])).fingerprint
    )
    assert CheckCache.open(data, one).fingerprint != CheckCache.open(data, other).fingerprint


def test_unreadable_or_unwritable_results_only_cost_a_full_check(tmp_path):
    directory, data, registry = shipped_copy(tmp_path), tmp_path / "data", CountingRegistry()
    data.mkdir()
    (data / FILE_NAME).write_text("{not json", encoding="utf-8")
    assert load(directory, data, registry).problems == []
    assert registry.asked > 0
    kept = json.loads((data / FILE_NAME).read_text(encoding="utf-8"))  # replaced, readable
    assert len(kept["passed"]) == len(list(directory.glob("*.yaml")))

    blocked = tmp_path / "file-not-dir"
    blocked.write_text("", encoding="utf-8")  # the data directory cannot be created
    for _ in range(2):
        catalog = load(directory, blocked / "data", registry)
        assert catalog.problems == [] and registry.asked > 0


def test_serve_builds_with_the_kept_results_and_logs_a_bad_runbook_each_time(
    tmp_path, sqlite_template, caplog
):
    directory = tmp_path / "rb"
    directory.mkdir()
    shutil.copyfile(SHIPPED / "http-check.yaml", directory / "http-check.yaml")
    good = (SHIPPED / "http-check.yaml").read_text(encoding="utf-8")
    (directory / "bad.yaml").write_text(
        good.replace("name: http-check", "name: bad-check").replace(
            "{{ params.url }}", UNKNOWN_PARAM
        ),
        encoding="utf-8",
    )
    database = tmp_path / "bot.db"
    shutil.copyfile(sqlite_template, database)
    settings = Settings(
        slack_bot_token="xoxb-test",
        slack_signing_secret="secret",
        slack={"api_url": "http://127.0.0.1:9"},  # never called: nothing is started here
        database_url=f"sqlite:///{database}",
        data_dir=tmp_path / "data",
        runbooks={"dirs": [directory]},
    )
    problems = load_dirs([directory], builtin_registry).problems
    assert problems and {p.file for p in problems} == {str(directory / "bad.yaml")}
    expected = [f"runbook not loaded: {p}" for p in problems]
    caplog.set_level(logging.ERROR, logger="incidentbot.bot")
    for start in range(2):
        caplog.clear()
        bot = Bot.build(settings, remember_checks=True)
        try:
            assert bot.catalog.names() == ["http-check"], start
            assert [r.getMessage() for r in caplog.records] == expected
        finally:
            bot.stop()
            bot.engine.dispose()
        assert (tmp_path / "data" / FILE_NAME).exists()


def test_built_without_remembering_nothing_is_written(tmp_path, sqlite_template):
    database = tmp_path / "bot.db"
    shutil.copyfile(sqlite_template, database)
    settings = Settings(
        slack_bot_token="xoxb-test",
        slack_signing_secret="secret",
        database_url=f"sqlite:///{database}",
        data_dir=tmp_path / "data",
        runbooks={"dirs": [SHIPPED]},
    )
    bot = Bot.build(settings)  # as the tests and the demo build it
    try:
        assert len(bot.catalog.runbooks) >= 6
    finally:
        bot.stop()
        bot.engine.dispose()
    assert not (tmp_path / "data" / FILE_NAME).exists()
