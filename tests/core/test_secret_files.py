"""Every secret can come from a file (`DG_<NAME>_FILE`, e.g. a mounted Kubernetes or Docker
secret), so it need not sit in the environment or the TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from core.settings import Settings, get_settings
from distillguard.cli import ExitCode, app

SECRETS = [
    name
    for name, field in Settings.model_fields.items()
    if field.annotation in (SecretStr, SecretStr | None)
]


def test_the_secrets_are_the_ones_the_readme_lists() -> None:
    assert set(SECRETS) >= {
        "api_token",
        "clickhouse_password",
        "webhook_secret",
        "kafka_sasl_password",
        "watermark_key",
    }


@pytest.mark.parametrize("name", SECRETS)
def test_every_secret_reads_from_its_file(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / name
    secret.write_text(f"{name}-from-a-file\n")  # as `echo ... > file` writes it
    monkeypatch.setenv(f"DG_{name.upper()}_FILE", str(secret))
    if name == "kafka_sasl_password":  # (only read with a user)
        monkeypatch.setenv("DG_KAFKA_SASL_USERNAME", "someone")
    value = getattr(Settings(), name)
    assert isinstance(value, SecretStr)
    assert value.get_secret_value() == f"{name}-from-a-file"


def test_a_file_beats_the_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "dg.toml"
    config.write_text('api_token = "from-toml"\n')
    (tmp_path / "token").write_text("from-file")
    monkeypatch.setenv("DG_CONFIG", str(config))
    monkeypatch.setenv("DG_API_TOKEN_FILE", str(tmp_path / "token"))
    assert Settings().api_token == SecretStr("from-file")


def test_variable_and_file_together_or_a_missing_file_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    (tmp_path / "secret").write_text("s3cret-in-file")
    monkeypatch.setenv("DG_WEBHOOK_SECRET_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("DG_WEBHOOK_SECRET", "s3cret-in-env")
    get_settings.cache_clear()
    both = runner.invoke(app, ["config"])
    assert both.exit_code == ExitCode.USAGE
    assert "DG_WEBHOOK_SECRET or DG_WEBHOOK_SECRET_FILE, not both" in both.output
    monkeypatch.delenv("DG_WEBHOOK_SECRET")
    monkeypatch.setenv("DG_WEBHOOK_SECRET_FILE", str(tmp_path / "absent"))
    get_settings.cache_clear()
    missing = runner.invoke(app, ["config"])
    assert missing.exit_code == ExitCode.USAGE
    assert f"DG_WEBHOOK_SECRET_FILE: cannot read {tmp_path / 'absent'}" in missing.output
    assert "s3cret" not in both.output + missing.output


def test_a_file_for_a_setting_that_is_no_secret_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "topic").write_text("from-file")
    monkeypatch.setenv("DG_TOPIC_FILE", str(tmp_path / "topic"))
    assert Settings().topic == "api-requests"


def test_sasl_needs_a_user_and_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DG_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValueError, match="needs kafka_sasl_username and kafka_sasl_password"):
        Settings()
    monkeypatch.setenv("DG_KAFKA_SASL_USERNAME", "someone")
    monkeypatch.setenv("DG_KAFKA_SASL_PASSWORD", "pw")
    assert Settings().kafka_security_protocol == "SASL_SSL"
