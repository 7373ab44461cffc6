"""The README documents every command and every option: the first page a user reads stays true."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskprep.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_and_option_is_in_the_readme(name: str) -> None:
    assert f"maskprep {name}" in README
    missing = [
        flag
        for param in main.commands[name].params
        for flag in getattr(param, "opts", []) + getattr(param, "secondary_opts", [])
        if flag.startswith("--") and flag != "--help" and flag not in README
    ]
    assert missing == [], f"maskprep {name}: options missing from README.md"


def test_every_command_has_help() -> None:
    for name, command in main.commands.items():
        assert command.help, name
