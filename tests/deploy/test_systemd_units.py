"""deploy/systemd/: one unit per long-running role, each `systemd-analyze verify`-clean and
sandboxed (`systemd-analyze security`), starting a `distillguard` command line the CLI accepts;
the service user and the environment file are valid too. The systemd checks run on a copy of
this machine's unit tree with the units installed under a temporary root, as a package would
install them (skipped only where systemd-analyze is absent)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from core.settings import Settings
from distillguard.cli import app
from tests.deploy.ops import DEPLOY, SCRAPE_CONFIG, SYSTEMD, load_yaml

EXECUTABLE = "/opt/distillguard/bin/distillguard"
SERVICES = {
    "distillguard-worker@9464.service": "worker",
    "distillguard-linker.service": "linker",
    "distillguard-api.service": "serve",
    "distillguard-alerts.service": "alerts dispatch",
}
# Every CLI command either runs as a service (a unit above) or is not a deployment role; a new
# command fails `test_every_long_running_role_has_a_unit` until it is sorted here.
NOT_ROLES = {
    "version", "config", "migrate", "retention", "replay", "calibrate", "score", "produce",
    "report", "report verify", "report keygen", "token create", "token revoke", "provenance test",
    "provenance attribute",
    "provenance experiment", "validate", "webhook add", "webhook list", "webhook remove",
    "dispositions export",  # an analyst's or a lawyer's one-off
    "demo",  # the one-command demo on the embedded store
    "teacher serve",  # the companion's test teacher, not part of the product
}  # fmt: skip
SYSTEM_UNITS = Path("/lib/systemd/system")


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None or not SYSTEM_UNITS.is_dir():
        pytest.skip("systemd-analyze is not installed here (Debian: the systemd package)")
    return found


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding this machine's system units and ours, installed as the README says,
    with a stand-in for the installed `distillguard` (verify checks ExecStart is executable)."""
    systemd_analyze()
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    shutil.copytree(
        SYSTEMD, root / "etc/systemd/system", ignore=shutil.ignore_patterns("*sysusers*")
    )
    executable = root / EXECUTABLE.lstrip("/")
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own arguments
        [systemd_analyze(), *args, f"--root={root}"], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("unit", [*SERVICES, "distillguard.target"])
def test_units_verify_without_a_warning(root: Path, unit: str) -> None:
    done = analyze(root, "verify", unit)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_reports_a_broken_unit(root: Path, tmp_path: Path) -> None:
    """systemd-analyze exits 0 on a misspelt key: the test above fails on any output."""
    broken = tmp_path / "root"
    shutil.copytree(root, broken, symlinks=True)
    hardening = broken / "etc/systemd/system/distillguard-.service.d/hardening.conf"
    hardening.write_text(hardening.read_text() + "ProtectSytem=strict\n")
    done = analyze(broken, "verify", "distillguard-linker.service")
    assert "Unknown key" in done.stderr


@pytest.mark.parametrize("unit", SERVICES)
def test_units_are_sandboxed(root: Path, unit: str) -> None:
    """systemd's own exposure score (0 sandboxed to 10 exposed); 'OK' is below 2 here."""
    done = analyze(root, "security", "--offline=true", unit)
    assert done.returncode == 0, done.stderr
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert exposure and float(exposure[1]) <= 2.0, done.stdout
    for setting in ("NoNewPrivileges=", "ProtectSystem=", "PrivateTmp=", "ProtectHome="):
        assert re.search(rf"✓ {setting}", done.stdout), setting


def unit_settings(path: Path) -> Iterator[tuple[str, str]]:
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            yield key.strip(), value.strip()


def command_of(unit: str) -> list[str]:
    """The unit's ExecStart as the arguments `distillguard` gets (specifiers filled in)."""
    template = re.sub(r"@[^.]+\.", "@.", unit)
    execs = [v for k, v in unit_settings(SYSTEMD / template) if k == "ExecStart"]
    assert len(execs) == 1 and execs[0].startswith(EXECUTABLE + " "), execs
    instance = unit.partition("@")[2].partition(".")[0]
    line = execs[0].replace("%i", instance).replace("%H", socket.gethostname())
    return line.split()[1:]


def cli_commands(command: Any = None, path: tuple[str, ...] = ()) -> Iterator[str]:
    command = command or typer.main.get_command(app)
    if hasattr(command, "commands"):
        if command.invoke_without_command and path:  # a group that also runs alone (`report`)
            yield " ".join(path)
        for name, sub in command.commands.items():
            yield from cli_commands(sub, (*path, name))
    else:
        yield " ".join(path)


@pytest.mark.parametrize("unit", SERVICES)
def test_units_start_a_command_line_the_cli_accepts(unit: str) -> None:
    """The arguments parse as the CLI's own (click raises on an unknown option)."""
    args = command_of(unit)
    names = SERVICES[unit].split()
    assert args[: len(names)] == names
    command: Any = typer.main.get_command(app)
    for name in names:
        command = command.commands[name]
    command.make_context(" ".join(names), args[len(names) :])


def test_each_role_serves_metrics_on_its_own_port_and_prometheus_scrapes_it() -> None:
    """Roles on one host must not share a metrics port (the second would fail to bind), and
    the example scrape configuration must reach each of them."""
    ports = {}
    for unit, role in SERVICES.items():
        args = command_of(unit)
        if "--metrics-port" in args:
            ports[role] = args[args.index("--metrics-port") + 1]
    assert set(ports) == {"worker", "linker", "alerts dispatch"}
    assert len(set(ports.values())) == len(ports)
    targets = {
        target.rpartition(":")[2]
        for job in load_yaml(SCRAPE_CONFIG)["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert set(ports.values()) <= targets


def test_every_long_running_role_has_a_unit() -> None:
    assert set(cli_commands()) == set(SERVICES.values()) | NOT_ROLES


def test_services_share_the_hardening_and_the_environment_file() -> None:
    settings = dict(unit_settings(SYSTEMD / "distillguard-.service.d/hardening.conf"))
    assert settings["User"] == "distillguard"
    assert settings["EnvironmentFile"] == "/etc/distillguard/distillguard.env"
    assert settings["ReadWritePaths"] == "/var/lib/distillguard"
    assert settings["Restart"] == "on-failure"
    for unit in SERVICES:
        assert unit.startswith("distillguard-")  # the drop-in's prefix: it applies to them all


def test_the_service_user_is_valid_for_sysusers(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers is not installed here (Debian: the systemd package)")
    done = subprocess.run(  # noqa: S603 - our own arguments
        [sysusers, f"--root={tmp_path}", "--dry-run", str(SYSTEMD / "distillguard.sysusers.conf")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "Creating user 'distillguard'" in done.stderr + done.stdout


def test_the_environment_file_names_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every DG_* key in the example (commented ones too) is a setting (a misspelt key would be
    ignored silently), and the active ones load: a server store, the data folder the units
    make writable."""
    text = (DEPLOY / "distillguard.env.example").read_text()
    keys = re.findall(r"^#?\s*DG_(\w+)=", text, flags=re.M)
    assert keys and {key.lower() for key in keys} <= set(Settings.model_fields)
    for line in text.splitlines():
        if line.startswith("DG_"):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.store == "server"
    assert str(settings.data_dir) == "/var/lib/distillguard"
