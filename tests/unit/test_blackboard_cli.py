"""`mesh-llm blackboard feed --since`: a time ago or a date, else one line. `install-skill`: the
skill file where agents read it (--dir to choose), a changed one kept beside it."""

from __future__ import annotations

import contextlib
import io
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from services.cli.blackboard import run, since_of
from services.cli.flags import UsageError, check

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - 30),
        ("10m", NOW - 600),
        ("2h", NOW - 7200),
        ("1.5d", NOW - 1.5 * 86400),
        ("2025-01-31", datetime(2025, 1, 31).timestamp()),
        ("2025-01-31T14:00", datetime(2025, 1, 31, 14).timestamp()),
        ("2025-01-31T14:00:00+00:00", 1738332000.0),
    ],
)
def test_since_reads_a_time_ago_or_a_date(text: str, expected: float) -> None:
    assert since_of(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "10", "10 m", "-1h", "2025-13-01"])
def test_anything_else_is_one_line(text: str) -> None:
    with pytest.raises(UsageError, match="a time ago"):
        since_of(text, NOW)


# `mesh-llm blackboard install-skill [--dir SKILLS]`: the agents' skill file.


def install(*flags: str) -> list[str]:
    options = check(["blackboard", "install-skill", *flags])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run(options.args) == 0
    return out.getvalue().splitlines()


def test_the_skill_explains_the_conventions_where_claude_code_reads_skills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    skill = tmp_path / ".claude" / "skills" / "mesh-llm-blackboard" / "SKILL.md"
    assert install() == [f"wrote {skill}"]
    text = skill.read_text()
    # YAML front matter first: a name matching the folder (lowercase and hyphens) and when to use it.
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["name"] == "mesh-llm-blackboard" and "blackboard" in meta["description"] and len(meta["description"]) <= 1024
    for word in ("QUESTION:", "STATUS:", "FINDING:", "TIP:", "DONE:"):
        assert word in body
    for tool in ("blackboard_post", "blackboard_search", "blackboard_feed", "mesh_status", "mesh_models", "mesh-llm blackboard post"):
        assert tool in body
    # A second run finds it as written: nothing is rewritten, no backup.
    assert install() == [f"{skill} is up to date"]
    assert sorted(p.name for p in skill.parent.iterdir()) == ["SKILL.md"]


def test_a_changed_skill_file_is_kept_beside_the_new_one(tmp_path: Path) -> None:
    skill = tmp_path / "skills" / "mesh-llm-blackboard" / "SKILL.md"
    skill.parent.mkdir(parents=True)
    skill.write_text("my own notes on the board\n")
    [line] = install("--dir", str(tmp_path / "skills"))
    backups = [p for p in skill.parent.iterdir() if p.name != "SKILL.md"]
    assert len(backups) == 1 and backups[0].name.startswith("SKILL.md.") and backups[0].name.endswith(".bak")
    assert backups[0].read_text() == "my own notes on the board\n"
    assert line == f"wrote {skill} (the previous one kept as {backups[0]})"
    assert "DONE:" in skill.read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["blackboard", "post", "hi", "--dir", "x"], "--dir is for blackboard install-skill"),
        (["blackboard", "install-skill", "now"], "usage: mesh-llm blackboard install-skill"),
        (["blackboard", "feed", "--mcp"], "blackboard --mcp takes no other words"),
        (["--dir", "x"], "are for mesh-llm blackboard"),
    ],
)
def test_misplaced_words_are_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        run(check(argv).args)
