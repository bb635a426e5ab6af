from importlib.metadata import EntryPoint

import pytest

from llmft.core import command

CALLS: list[list[str]] = []


def record(argv: list[str]) -> int:
    CALLS.append(argv)
    return 3


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    points = {
        "alpha": EntryPoint(name="alpha", value=f"{__name__}:record", group=command.GROUP),
        "beta-stage": EntryPoint(name="beta-stage", value="llmft.core.presets:main", group=command.GROUP),
    }
    monkeypatch.setattr(command, "installed_commands", lambda: points)
    CALLS.clear()


def test_llmft_dispatches_to_the_installed_stage_with_its_arguments(installed: None) -> None:
    assert command.main(["alpha", "--out", "x", "y"]) == 3
    assert CALLS == [["--out", "x", "y"]]


def test_llmft_help_lists_each_installed_stage(installed: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert command.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "  alpha " in out and "  beta-stage " in out and "llmft.core.presets" in out


def test_an_unknown_or_missing_command_exits_2_naming_the_installed_ones(
    installed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert command.main(["gamma"]) == 2
    assert "no command 'gamma' (installed: alpha, beta-stage)" in capsys.readouterr().err
    assert command.main([]) == 2
    assert CALLS == []


def test_commands_come_from_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def fake_entry_points(group: str) -> list[EntryPoint]:
        seen.append(group)
        return [EntryPoint(name="serve", value="llmft.serve.__main__:main", group=group)]

    monkeypatch.setattr(command, "entry_points", fake_entry_points)
    assert list(command.installed_commands()) == ["serve"]
    assert seen == ["llmft.commands"]
