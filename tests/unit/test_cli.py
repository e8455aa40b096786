"""The `lookalike` command without running anything: its declaration, its help, its records."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import tomllib

from lookalike import runfile
from lookalike.cli import parser

REPO = Path(__file__).resolve().parents[2]


def test_pyproject_declares_the_console_script_and_its_target_imports() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["lookalike"].partition(":")
    target = getattr(importlib.import_module(module), attr)
    assert callable(target)
    assert target is importlib.import_module("lookalike.cli").main


def test_python_m_lookalike_cli_lists_every_command() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "lookalike.cli", "--help"], capture_output=True,
                         text=True, env=env, timeout=60, check=True).stdout
    for command in ("demo", "serve", "ingest", "status", "stop"):
        assert command in out


def test_ingest_passes_the_job_options_through() -> None:
    args, extra = parser().parse_known_args(["ingest", "cat.csv", "--delete-missing",
                                             "--source", "feed"])
    assert (args.command, args.manifest, extra) == ("ingest", Path("cat.csv"),
                                                    ["--delete-missing", "--source", "feed"])


def record(pid: int) -> runfile.RunRecord:
    return runfile.RunRecord(pid=pid, command="serve", app_url="http://127.0.0.1:1",
                             dashboard_url="http://127.0.0.1:2", metrics_url="http://127.0.0.1:3",
                             gcs_address="127.0.0.1:4", collection="c", started_at="now")


def test_a_run_record_reads_back_while_its_process_lives(tmp_path: Path) -> None:
    runfile.write(tmp_path, record(os.getpid()))
    assert runfile.read(tmp_path) == record(os.getpid())


def test_the_record_of_a_dead_process_reads_as_nothing(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    runfile.write(tmp_path, record(gone.pid))
    assert runfile.read(tmp_path) is None


def test_removing_leaves_another_runs_record(tmp_path: Path) -> None:
    runfile.write(tmp_path, record(os.getpid()))
    runfile.remove(tmp_path, os.getpid() + 1)
    assert runfile.read(tmp_path) is not None
    runfile.remove(tmp_path, os.getpid())
    assert not runfile.path_for(tmp_path).exists()


def test_serve_refuses_to_start_with_a_key_file_others_may_read(tmp_path: Path, capsys) -> None:
    from lookalike.cli import run_foreground
    from lookalike.config import Settings

    (tmp_path / "admin.key").write_text("an-admin-key-of-enough-length")
    (tmp_path / "admin.key").chmod(0o644)
    code = run_foreground(Settings(data_dir=tmp_path), command="serve",
                          config=tmp_path / "unused.yaml")
    out = capsys.readouterr().out
    assert code == 1 and f"chmod 600 {tmp_path / 'admin.key'}" in out
    assert "starting a local Ray" not in out  # refused before anything started
