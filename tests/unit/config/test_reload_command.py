"""`broker reload`: SIGHUP goes to the broker named by --pid or --pid-file, and to nothing else.

kill(2) reads 0 and negative numbers as process groups and -1 as every process the caller may signal; a PID
file holding one of those, or another program's PID, must not turn a reload into a signal to the wrong
processes. The processes are described by a stand-in for /proc (proc(5): ``<pid>/cmdline``, NUL-separated).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from broker.cli import main
from broker.commands import run

BROKER_PID = 4242


@pytest.fixture
def proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A /proc with itself and one `broker serve` master (PID 4242)."""
    root = tmp_path / "proc"
    (root / "self").mkdir(parents=True)
    monkeypatch.setattr(run, "PROC", root, raising=False)
    processes(root, {BROKER_PID: ["/usr/bin/python3", "-m", "broker.cli", "serve", "--config", "/etc/broker"]})
    return root


def processes(root: Path, cmdlines: dict[int, list[str]]) -> None:
    for pid, args in cmdlines.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in args))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: signals.append((pid, sig)))
    return signals


def reload(config_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["reload", "--config", str(config_dir), *args])


@pytest.mark.parametrize(
    ("pid", "fragment"),
    [
        pytest.param("-1", "-1 is not a process ID (kill would signal every process)", id="every-process"),
        pytest.param("0", "0 is not a process ID (kill would signal a process group)", id="own-group"),
        pytest.param("-4242", "-4242 is not a process ID (kill would signal a process group)", id="a-group"),
        pytest.param("1", "process 1 is not the broker (its command line: /sbin/init splash)", id="init"),
        pytest.param("777", "process 777 is not the broker (its command line: /usr/bin/broker readiness --config "
                     "/etc/broker)", id="a-broker-command-that-does-not-reload"),
        pytest.param("778", "process 778 is not the broker (its command line: sshd: /usr/sbin/sshd", id="sshd"),
        pytest.param("9999", "no process 9999", id="gone"),
    ],
)
def test_only_a_broker_process_is_signalled(config_dir: Path, proc: Path, sent: list[tuple[int, int]],
                                            tmp_path: Path, pid: str, fragment: str) -> None:
    processes(proc, {1: ["/sbin/init", "splash"], 777: ["/usr/bin/broker", "readiness", "--config", "/etc/broker"],
                     778: ["sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"]})
    pid_file = tmp_path / "broker.pid"
    pid_file.write_text(f"{pid}\n")

    for args in (["--pid", pid], ["--pid-file", str(pid_file)]):
        result = reload(config_dir, *args)

        assert result.exit_code == 1, result.output
        assert fragment in result.output
        assert result.output.startswith(f"Error: {'--pid' if args[0] == '--pid' else pid_file}: ")
        assert result.output.rstrip().endswith("; nothing sent")
    assert sent == []


@pytest.mark.parametrize(
    ("pid", "cmdline"),
    [
        pytest.param(BROKER_PID, None, id="python-m-broker-cli-serve"),
        pytest.param(1, ["/usr/local/bin/python", "/usr/local/bin/broker", "serve", "--config", "/config"],
                     id="pid-1-in-a-container"),
        pytest.param(4300, ["gunicorn: master [broker]"], id="gunicorn-master-with-its-title"),
        pytest.param(4301, ["broker", "demo"], id="the-demo"),
    ],
)
def test_the_broker_is_signalled(config_dir: Path, proc: Path, sent: list[tuple[int, int]], pid: int,
                                 cmdline: list[str] | None) -> None:
    if cmdline is not None:
        processes(proc, {pid: cmdline})

    result = reload(config_dir, "--pid", str(pid))

    assert result.exit_code == 0, result.output
    assert sent == [(pid, signal.SIGHUP)]


def test_without_procfs_only_the_number_is_checked(config_dir: Path, tmp_path: Path, sent: list[tuple[int, int]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "PROC", tmp_path / "no-proc", raising=False)

    assert "PID 1 is init, not the broker" in reload(config_dir, "--pid", "1").output
    assert "-1 is not a process ID" in reload(config_dir, "--pid", "-1").output
    assert reload(config_dir, "--pid", str(BROKER_PID)).exit_code == 0
    assert sent == [(BROKER_PID, signal.SIGHUP)]


def test_the_real_proc_names_this_test_run_no_broker(config_dir: Path, sent: list[tuple[int, int]]) -> None:
    result = reload(config_dir, "--pid", str(os.getpid()))

    assert f"process {os.getpid()} is not the broker (its command line: " in result.output
    assert sent == []
