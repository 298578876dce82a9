"""Run outside the project folder, ``crm-bridge`` refuses to make a second instance in
``./instance`` and says where it looked, unless ``BRIDGE_INSTANCE_PATH`` names one or the
command is ``crm-bridge init``."""

from __future__ import annotations

import sys

import pytest

from bridge import console


@pytest.mark.parametrize(
    ("args", "env", "refused"),
    [
        (["connection", "list"], {}, True),
        (["--json"], {}, False),  # no command: click prints the usage
        (["init"], {}, False),
        (["connection", "list", "--help"], {}, False),
        (["connection", "list"], {"BRIDGE_INSTANCE_PATH": "/srv/bridge"}, False),
    ],
)
def test_which_runs_need_an_instance(tmp_path, args, env, refused):
    assert (console.missing_instance(args, env, str(tmp_path)) is not None) is refused
    (tmp_path / "instance").mkdir()
    assert console.missing_instance(args, env, str(tmp_path)) is None  # the project folder


def test_the_console_script_refuses_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BRIDGE_INSTANCE_PATH", raising=False)
    monkeypatch.setattr(sys, "argv", ["crm-bridge", "user", "list"])
    with pytest.raises(SystemExit) as exit_:
        console.main()
    assert exit_.value.code == 1
    message = capsys.readouterr().err
    assert f"no crm-bridge instance at {tmp_path / 'instance'}" in message
    assert "BRIDGE_INSTANCE_PATH" in message and "crm-bridge init" in message
    assert list(tmp_path.iterdir()) == []
