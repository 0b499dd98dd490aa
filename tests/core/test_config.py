"""Settings: DG_* environment beats the TOML file, which beats defaults; secrets stay secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_toml_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "dg.toml"
    config.write_text('store = "server"\ntopic = "from-toml"\nbatch_size = 10\n')
    monkeypatch.setenv("DG_CONFIG", str(config))
    monkeypatch.setenv("DG_TOPIC", "from-env")
    settings = Settings()
    assert settings.store == "server"  # from the file
    assert settings.topic == "from-env"  # the environment wins
    assert settings.batch_size == 10


def test_example_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DG_CONFIG", str(ROOT / "distillguard.example.toml"))
    assert Settings().dlq_topic == "api-requests.dlq"


def test_invalid_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DG_STORE", "postgres")
    with pytest.raises(ValueError, match="store"):
        Settings()


def test_secrets_never_printed(tmp_path: Path) -> None:
    secret = "hunter2-very-secret"
    env = {
        "DG_CLICKHOUSE_PASSWORD": secret,
        "DG_API_TOKEN": secret,
        "PATH": "/usr/bin:/bin",
        "DG_CONFIG": str(tmp_path / "absent.toml"),
    }
    shown = subprocess.run(
        [sys.executable, "-m", "distillguard.cli", "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert secret not in shown.stdout + shown.stderr
    assert "clickhouse_password = **********" in shown.stdout
    assert repr(Settings(clickhouse_password=secret)).count(secret) == 0
