"""The blameless-language check: what it flags, what it leaves alone, and its settings."""

from __future__ import annotations

import pytest

from incidentbot.config import ConfigError, Settings, load_settings
from incidentbot.postmortems.blameless import check_sections, check_text
from incidentbot.postmortems.config import BlamelessSettings

NAMES = ["Bob Lee", "Bob", "Dana Okafor", "Dana", "carol"]
RULES = BlamelessSettings()


def found(text: str, rules: BlamelessSettings = RULES, names=NAMES) -> list[tuple[str, str]]:
    return [(f.phrase, f.kind) for f in check_text("what_went_wrong", text, rules, names)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It was human error.", [("human error", "phrase")]),
        ("We should have alerted on the head, not on lag.", [("should have", "phrase")]),
        ("The rollout was careless.", [("careless", "phrase")]),
        ("This was the fault of the deploy team.", [("fault of", "phrase")]),
        ("That’s carol’s fault.", [("carol's fault", "person"), ("'s fault", "phrase")]),
        ("Someone was negligent with the keys.", [("negligent", "phrase")]),
        (
            "Bob forgot to renew the certificate.",
            [("Bob forgot", "person"), ("forgot to", "phrase")],
        ),
        ("Dana failed to drain the node.", [("Dana failed", "person"), ("failed to", "phrase")]),
        ("The on-call ignored the page.", [("The on-call ignored", "person")]),
        ("<@U01BOB> broke the config.", [("<@U01BOB> broke", "person")]),
        ("@dana quickly misconfigured HAProxy.", [("@dana quickly misconfigured", "person")]),
        ("A typo by Bob Lee took rpc-2 down.", [("typo by Bob Lee", "person")]),
        ("It was Dana's mistake.", [("Dana's mistake", "person")]),
        ("Obviously the disk was full.", [("Obviously", "phrase")]),
        ("SHOULD  HAVE checked", [("SHOULD HAVE", "phrase")]),
    ],
)
def test_blaming_phrasing_is_flagged(text, expected):
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The alert failed to fire because its rule had a typo.",  # a system, not a person
        "Bob noticed the error and restarted the node.",  # a person near a noun, not blamed
        "Dana found the misconfigured backend within minutes.",
        "The restart runbook cannot tell a resyncing client from a stuck one.",
        "We kept the review blameless.",
        "A config change reached production without a review.",
        "The shoulder of the chart shows the lag.",  # 'should' inside a word
        "Bobby Tables forgot nothing.",  # a longer word is not the name Bob
        "",
    ],
)
def test_blameless_phrasing_is_left_alone(text):
    assert found(text) == []


def test_findings_carry_section_line_excerpt_and_suggestion():
    sections = {
        "what_went_well": "The failover worked.",
        "what_went_wrong": "The alert was late.\n\nIt was human error; nobody checked the peers.",
    }
    findings = check_sections(sections, RULES, NAMES)
    assert len(findings) == 1
    f = findings[0]
    assert (f.section, f.line, f.phrase, f.kind) == ("what_went_wrong", 3, "human error", "phrase")
    assert f.excerpt == "It was human error;"
    assert "conditions" in f.suggestion
    assert f.line_text().startswith("what_went_wrong line 3: “human error”: name the conditions")


def test_the_word_list_is_configurable():
    extra = Settings(
        postmortems={
            "blameless": {
                "extra_phrases": [
                    {"phrase": "rookie mistake", "suggestion": "say what made it easy to make"}
                ]
            }
        }
    ).postmortems.blameless
    assert found("A rookie mistake took the node down.", extra) == [("rookie mistake", "phrase")]
    assert found("It was human error.", extra) == [("human error", "phrase")]  # defaults stay

    only = BlamelessSettings(phrases=[{"phrase": "rookie mistake", "suggestion": "s"}])
    assert found("It was human error.", only) == []  # the list replaced
    assert found("Bob broke it.", only) == [("Bob broke", "person")]  # people are still found

    anyone = BlamelessSettings(phrases=[{"phrase": "failed to", "suggestion": "s"}])
    assert found("The alert failed to fire.", anyone) == [("failed to", "phrase")]

    no_people = BlamelessSettings(failure_words=["exploded"], failure_nouns=["blunder"])
    assert found("Bob broke it.", no_people) == []
    assert found("Bob exploded the cluster.", no_people) == [("Bob exploded", "person")]

    close = BlamelessSettings(distance=0)
    assert found("Bob quickly broke it.", close) == []
    assert found("Bob quickly broke it.") == [("Bob quickly broke", "person")]


def test_bad_word_lists_are_refused_with_the_setting_named(tmp_path, monkeypatch):
    monkeypatch.delenv("INCIDENTBOT_CONFIG", raising=False)
    path = tmp_path / "incidentbot.yaml"
    path.write_text(
        "postmortems:\n"
        "  due_business_days: -1\n"
        "  blameless:\n"
        "    extra_phrases:\n"
        "      - {phrase: '!!', suggestion: x}\n"
        "    failure_words: ['  ']\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    problems = "\n".join(caught.value.problems)
    assert "postmortems.due_business_days: Input should be greater than or equal to 0" in problems
    assert "postmortems.blameless.extra_phrases[0].phrase: '!!' has no letters" in problems
    assert "postmortems.blameless.failure_words: '  ' has no letters" in problems


def test_settings_come_from_yaml_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("INCIDENTBOT_CONFIG", raising=False)
    path = tmp_path / "incidentbot.yaml"
    path.write_text(
        "postmortems:\n"
        f"  publish_dir: {tmp_path / 'published'}\n"
        "  blameless:\n"
        "    extra_phrases: [{phrase: 'root cause was', suggestion: 'list the factors'}]\n"
    )
    monkeypatch.setenv("INCIDENTBOT_POSTMORTEMS__DUE_BUSINESS_DAYS", "3")
    settings = load_settings(path)
    assert settings.postmortems.due_business_days == 3
    assert settings.postmortems.publish_dir == tmp_path / "published"
    assert [p.phrase for p in settings.postmortems.blameless.extra_phrases] == ["root cause was"]
