"""The CLI's conventions (issue 18 §4): `--version`; results on stdout (`--json` for scripts),
progress bars on stderr; a store or Kafka that is down ends a command with one line on stderr and
its documented exit code, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from core.progress import steps
from core.settings import get_settings
from core.version import full_version
from distillguard.cli import ExitCode, app
from tests.distillguard.test_cli import request_log, volume_detector  # noqa: F401 - fixtures
from tests.streaming.test_pipeline import traffic

runner = CliRunner()
BAR = "━"  # what rich draws a bar with


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting is refused, and no other process can
    take the port while the test runs."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


def distillguard(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The command as a user runs it (a real process: no test runner catches what it raises)."""
    return subprocess.run(
        [sys.executable, "-m", "distillguard.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DG_DETECTOR": "volume", "COLUMNS": "200", **env},
        timeout=300,
    )


def assert_one_line(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("distillguard: ")
    for word in words:
        assert word in lines[0]
    return lines[0]


def test_version() -> None:
    """The package version and the commit; `.dirty` is left out of the comparison, as another
    test may change a tracked file between the two reads."""
    result = distillguard("--version")
    assert result.returncode == 0
    assert result.stdout.strip().removesuffix(".dirty") == full_version().removesuffix(".dirty")
    assert "+g" in result.stdout  # a source checkout names its commit


def test_help_documents_the_exit_codes() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Exit codes: 0 ok; 1 failed; 2 usage or configuration error" in result.stdout
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert "7 an HTTP endpoint" in result.stdout
    assert "5 report verify: the report was altered" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["migrate"],
        ["replay", "REQUESTS"],
        ["token", "create", "--role", "analyst"],
        ["dispositions", "export"],
    ],
    ids=["migrate", "replay", "token", "dispositions"],
)
def test_a_store_that_is_down_is_one_line_and_exit_3(
    args: list[str],
    closed_port: int,
    request_log: Path,  # noqa: F811
) -> None:
    args = [str(request_log) if arg == "REQUESTS" else arg for arg in args]
    result = distillguard(
        *args,
        DG_STORE="server",
        DG_CLICKHOUSE_URL=f"clickhouse://default:hunter2@127.0.0.1:{closed_port}",
    )
    line = assert_one_line(
        result, ExitCode.STORE_UNAVAILABLE, "store unavailable", f"127.0.0.1:{closed_port}"
    )
    assert "hunter2" not in line


def test_kafka_that_is_down_is_one_line_and_exit_4(
    closed_port: int,
    request_log: Path,  # noqa: F811
) -> None:
    result = distillguard(
        "produce", str(request_log), DG_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port}"
    )
    assert_one_line(
        result, ExitCode.KAFKA_UNAVAILABLE, f"Kafka unavailable at 127.0.0.1:{closed_port}"
    )


def test_the_worker_without_kafka_ends_with_one_line_and_exit_4(closed_port: int) -> None:
    """The worker is a service: its log may show the driver's retries first, never a traceback,
    and its last line says why it stopped."""
    result = distillguard(
        "worker", "--metrics-port", "0", DG_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port}"
    )
    assert result.returncode == ExitCode.KAFKA_UNAVAILABLE, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("distillguard: Kafka unavailable at ")


@pytest.mark.models  # the watermark's tokenizer loads before the endpoint is called (~20 s)
def test_an_unreachable_suspect_endpoint_is_one_line_and_exit_7(
    closed_port: int, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Explain photosynthesis."}\n')
    url = f"http://127.0.0.1:{closed_port}/v1/chat/completions"
    result = distillguard(
        "provenance", "test", "--out", str(tmp_path / "case.json"), "--endpoint", url,
        "--prompts", str(prompts), DG_DATA_DIR=str(tmp_path / "data"), DG_WATERMARK_KEY="k",
    )  # fmt: skip
    # Its progress bar (stderr) may stand above the line; never a traceback.
    assert result.returncode == ExitCode.ENDPOINT_UNAVAILABLE, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith(f"distillguard: {url} unreachable: ")


@pytest.mark.parametrize(
    "env",
    [
        {"DG_STORE": "server", "DG_CLICKHOUSE_URL": "https://default:hunter2@127.0.0.1:1"},
        {"DG_STORE": "elsewhere"},
    ],
    ids=["url", "store"],
)
def test_invalid_configuration_is_one_line_and_exit_2(env: dict[str, str]) -> None:
    line = assert_one_line(distillguard("migrate", **env), ExitCode.USAGE, "invalid configuration")
    assert "hunter2" not in line


def test_score_result_on_stdout_progress_on_stderr(
    request_log: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "verdicts.jsonl"
    result = distillguard("score", "--events", str(request_log), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    (summary,) = result.stdout.splitlines()
    assert summary.startswith("500 events, 10 dead letters, ") and summary.endswith(f"→ {out}")
    # the self-calibration's bars, then the scoring bar (rich prints them once when stderr is a
    # file), all on stderr
    assert BAR in result.stderr and BAR not in result.stdout
    assert "reading requests.jsonl" in result.stderr and "fitting the detector" in result.stderr
    assert f"500 events, {len(out.read_bytes().splitlines())} verdicts" in result.stderr

    as_json = distillguard("score", "--events", str(request_log), "--out", str(out), "--json")
    assert as_json.returncode == 0, as_json.stderr[-3000:]
    document = orjson.loads(as_json.stdout)
    assert (document["events"], document["dead_letters"], document["out"]) == (500, 10, str(out))
    assert document["verdicts"] == len(out.read_bytes().splitlines())
    assert f"{document['accounts_flagged']} accounts flagged" in summary


def test_calibrate_json_and_progress(tmp_path: Path) -> None:
    benign = tmp_path / "benign.jsonl"
    benign.write_bytes(b"\n".join(traffic(heavy=0)) + b"\n")
    result = runner.invoke(
        app, ["calibrate", "--benign", str(benign), "--out", str(tmp_path / "m"), "--json"]
    )
    assert result.exit_code == 0, result.output
    document = orjson.loads(result.stdout)
    assert document["detector"] == "volume" and document["calibration"]["threshold"] == 11
    assert document["model"] == str(tmp_path / "m" / "calibration.json")
    assert "reading benign.jsonl" in result.stderr and "200/200" in result.stderr
    assert BAR not in result.stdout


def test_replay_and_config_json(
    request_log: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    replayed = runner.invoke(app, ["replay", str(request_log), "--json"])
    assert replayed.exit_code == 0, replayed.output
    summary = orjson.loads(replayed.stdout)
    assert (summary["events"], summary["dead_letters"], summary["backend"]) == (
        500,
        10,
        "embedded",
    )
    assert BAR in replayed.stderr

    monkeypatch.setenv("DG_CLICKHOUSE_URL", "clickhouse://u:hunter2@h:9000")
    get_settings.cache_clear()
    shown = runner.invoke(app, ["config", "--json"])
    assert shown.exit_code == 0, shown.output
    assert orjson.loads(shown.stdout)["clickhouse_url"] == "clickhouse://u:***@h:9000"


def test_token_create_json(tmp_path: Path) -> None:
    result = runner.invoke(app, ["token", "create", "--role", "analyst", "--json"])
    assert result.exit_code == 0, result.output
    token = orjson.loads(result.stdout)
    assert token["role"] == "analyst" and token["name"] == "cli" and token["token"]
    revoked = runner.invoke(app, ["token", "revoke", token["token_id"]])
    assert revoked.stdout == f"revoked {token['token_id']}\n"


def test_attribute_shows_progress_and_keeps_json_on_stdout(
    request_log: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert runner.invoke(app, ["replay", str(request_log)]).exit_code == 0
    outputs = tmp_path / "suspect.jsonl"
    outputs.write_bytes(b'{"output": "a suspect model wrote these words"}\n')
    result = runner.invoke(app, ["provenance", "attribute", "--suspect-outputs", str(outputs)])
    assert result.exit_code == 0, result.output
    case = orjson.loads(result.stdout)
    assert case["kind"] == "attribution" and case["totals"]["outputs"] == 1
    assert "logged responses compared" in result.stderr


def test_log_driven_steps_print_above_the_bar_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """How `validate` and `provenance experiment` show progress: each line the library logs
    is printed above the bar and counts one step."""
    with steps("work", 3) as bar:
        for message in ["one", "two", "three"]:
            bar.log(message)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[:3] == ["one", "two", "three"]
    assert "work" in captured.err and "3/3" in captured.err


def test_validate_logs_above_its_bar_and_prints_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`validate`'s wiring (the real run trains students: tests/students/test_validate.py)."""
    import students.validate

    def run_validation(config, settings, out_dir, log) -> dict:
        for name in ["benign traffic: 4 requests", *config.strategies]:
            log(name)
        return {"strategies": list(config.strategies)}

    monkeypatch.setattr(students.validate, "run_validation", run_validation)
    monkeypatch.setattr(students.validate, "markdown", lambda report: "| table |")
    result = runner.invoke(app, ["validate", "--quick", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    strategies = list(students.validate.QUICK.strategies)
    assert orjson.loads(result.stdout) == {"strategies": strategies}
    assert result.stderr.splitlines()[: 1 + len(strategies)] == [
        "benign traffic: 4 requests",
        *strategies,
    ]
    assert "validation" in result.stderr and BAR in result.stderr
