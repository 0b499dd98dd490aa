"""Provenance as a user runs it, each command in its own process (as typed in a shell):
`provenance experiment --quick` on real students, `replay` → `provenance attribute` on real
ShareGPT answers (by text) and against a suspect endpoint (by watermark), `provenance test` on the
real watermarked teacher, and forensic reports that carry the cases with escaped text."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from core.tokenizer import teacher_tokenizer
from detectors.corpus import iter_conversations
from provenance.watermark import WatermarkKey
from students.distill import new_student
from students.prompts import attack_pool
from students.teacher import GenerationSettings, Teacher, watermarked
from tests.conftest import TEACHER_DIR, data_folder
from tests.provenance.test_radioactivity import _free_port

SECRET = "provenance-cli-test-key"
HOSTILE = "<script>alert('x')</script> "


def distillguard(
    *args: str, data_dir: Path | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    env = {**os.environ, "DG_DETECTOR": "volume", "DG_WATERMARK_KEY": SECRET}
    if data_dir is not None:
        env["DG_DATA_DIR"] = str(data_folder(data_dir))
    result = subprocess.run(
        [sys.executable, "-m", "distillguard.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# Training the three students was 95% of this test (pyinstrument: 1,727 of 1,821 s on 2 busy
# cores; 900 optimiser steps, each dominated by the 49k-token output layer; one student 543 s on
# 2 busy cores). They now train with a trimmed vocabulary (students/vocabulary.py: the 490 tokens
# of their training set, 391k trainable parameters instead of 6.6M) on one thread: 28 s a
# student, the whole test 132 s with the teacher's answers warm (2026-12-03, 2 busy cores). The
# teacher's answers come from the session's test cache (tests/conftest.py), 34 s warm, 508 s
# cold. The margin grew: the marked student's closed-model p is 4.8e-20 (the test needs < 1e-6;
# full vocabulary, 150 epochs: 3.7e-11 in the same measurement, 4.4e-15 before; 7.0e-08 after
# 125, 3.6e-06 after 100); the clean students' p-values 0.45-0.70, none of 20 other-key tests
# below 0.01. The limit still allows for a cold teacher cache on a busy machine.
@pytest.mark.models
@pytest.mark.overlap  # first, beside the tests that mostly wait; a cold teacher is most of it
@pytest.mark.timeout(1800)
def test_quick_experiment_on_real_students(tmp_path: Path) -> None:
    """The fully watermarked student is caught and its harvesters named; clean students are
    not accused under our key or under other keys (the full run measures the rates)."""
    table = tmp_path / "results" / "provenance.md"
    distillguard(
        "provenance",
        "experiment",
        "--quick",
        "--jobs",
        "2",  # the students in two spawned processes, as `make bench` runs them
        "--out",
        str(tmp_path),
        "--table-out",
        str(table),
        timeout=1750,
    )
    report = orjson.loads((tmp_path / "experiment.json").read_bytes())
    students = report["students"]
    marked = [s for s in students if s["fraction"] == 1.0]
    clean = [s for s in students if s["watermarked_pairs"] == 0]
    assert len(marked) == 1 and len(clean) == 2
    assert marked[0]["closed"]["score"]["p_value"] < 1e-6
    assert marked[0]["precision_at_3"] == 1.0
    assert marked[0]["combined_precision_at_3"] == 1.0  # both methods, one ranking
    # by watermark the scratch student, which answers every prompt with answers it memorised,
    # still puts a harvester first (the pruned students of the full run keep them apart)
    assert marked[0]["watermark_top_accounts"][0].startswith("harvester-")
    assert marked[0]["open"]["texts"] == 16  # fed the answers served to the harvesters
    for student in clean:
        for test in ("closed", "open", "unseen"):
            assert student[test]["score"]["p_value"] > 1e-3
        # asked the logged prompts of a harvest it never saw, it names no account
        assert student["watermark_p_adjusted"][0] > 0.01
        assert student["open"]["texts"] == 16  # every watermarked answer to those prompts
    null = [p for s in clean for p in s["null_p_values"]]
    assert len(null) == 30 and sum(p < 0.01 for p in null) <= 3
    assert "| 100% | 0 | 16 |" in (tmp_path / "experiment.md").read_text()
    # the dose-response: the clean students at 0 %, then the marked one, as table and plot
    dose = report["dose_response"]
    assert [(d["fraction"], d["watermarked_pairs"]) for d in dose] == [(0.0, 0), (1.0, 16)]
    assert dose[1]["p"]["closed"] == marked[0]["closed"]["score"]["p_value"]
    assert "| 100% | 16 |" in table.read_text() and "| 0% | 0 | median" in table.read_text()
    for png in (tmp_path / "experiment.png", table.with_suffix(".png")):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# A model test (it trains a student on the teacher's answers): in phase 2 of `make test`, after the
# quick experiment warmed the teacher's cache, 64 s (2026-12-07, alone). Unmarked, it ran in phase
# 1 beside that experiment, both answering with a cold teacher on two cores: 556 s of a 600 s limit.
@pytest.mark.models
def test_a_confirmation_run_trains_clean_students_no_earlier_run_saw(tmp_path: Path) -> None:
    """`--shares none --clean-seeds-from N`: clean students only, from a later seed block (their
    own draws and training), for a confirmation of the false-accusation rate on fresh students."""
    distillguard(
        "provenance",
        "experiment",
        "--quick",
        "--shares",
        "none",
        "--clean-students",
        "1",
        "--clean-seeds-from",
        "7",
        "--out",
        str(tmp_path),
        timeout=1750,
    )
    report = orjson.loads((tmp_path / "experiment.json").read_bytes())
    (student,) = report["students"]
    assert (student["seed"], student["watermarked_pairs"]) == (7, 0)
    assert report["config"]["first_clean_seed"] == 7 and report["config"]["fractions"] == []
    assert [d["fraction"] for d in report["dose_response"]] == [0.0]
    assert report["false_accusation"]["clean_students"] == 1
    for bad in ("1.5", "x"):
        refused = subprocess.run(
            [sys.executable, "-m", "distillguard.cli", "provenance", "experiment", "--shares", bad],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 2 and "--shares" in refused.stderr


def _answers(count: int) -> list[str]:
    """Real ChatGPT answers from ShareGPT, code (with '<' and '&') included."""
    answers = []
    for conversation in iter_conversations(limit=400):
        for role, text in conversation.turns:
            if role == "assistant" and len(text.split()) >= 40:
                answers.append(text[:1500])
    return answers[:count]


def _html_report(data: Path, account: str, folder: Path, *cases: Path) -> str:
    """`distillguard report --format html` on the account with the cases attached: its HTML."""
    attached = [option for case in cases for option in ("--provenance", str(case))]
    distillguard(
        "report",
        "--account",
        account,
        "--out",
        str(folder),
        "--format",
        "html",
        *attached,
        data_dir=data,
    )
    return (folder / "report.html").read_text()


@pytest.mark.models
def test_attribution_and_radioactivity_cases_in_a_forensic_report(tmp_path: Path) -> None:
    data = tmp_path / "data"
    answers = _answers(120)
    log = []
    for index, text in enumerate(answers):
        log.append(
            {
                "request_id": f"r-{index:04d}",
                "account_id": f"acct-{index % 30:02d}",
                "timestamp": 1_795_000_000_000 + index * 60_000,
                "messages": [{"role": "user", "content": f"question {index}"}],
                "response": text,
            }
        )
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in log) + b"\n")
    distillguard("replay", str(events), data_dir=data)

    # the suspect reproduces acct-07's answers (cut short, with hostile markup: outputs are
    # untrusted input), plus text nobody received
    copied = [
        HOSTILE + e["response"][: len(e["response"]) * 2 // 3]
        for e in log
        if e["account_id"] == "acct-07"
    ]
    unrelated = _answers(200)[150:170]
    outputs = tmp_path / "suspect.jsonl"
    outputs.write_bytes(b"\n".join(orjson.dumps({"output": t}) for t in copied + unrelated))
    case_file = tmp_path / "attribution.json"
    distillguard(
        "provenance",
        "attribute",
        "--suspect-outputs",
        str(outputs),
        "--out",
        str(case_file),
        data_dir=data,
    )
    case = orjson.loads(case_file.read_bytes())
    assert case["accounts"][0]["account_id"] == "acct-07"
    assert case["accounts"][0]["p_adjusted"] < 1e-3
    assert all(a["p_adjusted"] > 0.01 for a in case["accounts"][1:])

    # radioactivity, closed model: the suspect's outputs are our own watermarked answers
    teacher = Teacher(TEACHER_DIR)
    marked = watermarked(teacher, WatermarkKey(SECRET.encode()))
    conversations = [[{"role": "user", "content": p}] for p in attack_pool(500)[:6]]
    settings = GenerationSettings(temperature=0.7, max_tokens=32, seed=5)
    texts = [c[0].text for c in marked.complete(conversations, settings)]
    marked_outputs = tmp_path / "marked.jsonl"
    marked_outputs.write_bytes(b"\n".join(orjson.dumps({"text": t}) for t in texts))

    def radioactivity(case: Path, *options: str) -> dict:
        distillguard(
            "provenance",
            "test",
            "--outputs",
            str(marked_outputs),
            *options,
            "--out",
            str(case),
            data_dir=data,
        )
        return orjson.loads(case.read_bytes())

    radio_file = tmp_path / "radioactivity.json"
    radio = radioactivity(radio_file)
    assert radio["test"]["score"]["p_value"] < 1e-4
    assert radio["suspect"]["kind"] == "outputs file" and len(radio["suspect"]["sha256"]) == 64

    # with a reference (our model's unwatermarked answers to the same prompts, another draw):
    # the windows it shows are left out and the watermark is still found in the rest
    plain = [c[0].text for c in teacher.complete(conversations, replace(settings, seed=6))]
    reference = tmp_path / "reference.jsonl"
    reference.write_bytes(b"\n".join(orjson.dumps({"output": t}) for t in plain))
    referenced_file = tmp_path / "radioactivity-referenced.json"
    referenced = radioactivity(referenced_file, "--reference", str(reference))["test"]
    assert referenced["skipped_reference"] > 0 and radio["test"]["skipped_reference"] is None
    assert 0 < referenced["score"]["scored"] < radio["test"]["score"]["scored"]
    assert referenced["score"]["p_value"] < 1e-3
    assert any("reference" in line for line in referenced["assumptions"])

    folder = tmp_path / "report"
    html = _html_report(data, "acct-07", folder, case_file, radio_file, referenced_file)
    left_out = f"{referenced['skipped_reference']} distinct windows that our model writes"
    assert html.count("Radioactivity test (closed model)") == 2 and html.count(left_out) == 1
    assert "Attribution of the suspect" in html and "Radioactivity test (closed model)" in html
    assert "acct-07" in html and "Assumptions" in html
    assert case["examples"][0]["output"].startswith(HOSTILE)
    provenance_section = html.split("<h2>Provenance</h2>")[1]
    assert "&lt;script&gt;" in provenance_section and "<script" not in provenance_section
    saved = orjson.loads((folder / "report.json").read_bytes())
    assert [c["kind"] for c in saved["provenance"]] == [
        "attribution",
        "radioactivity",
        "radioactivity",
        "radioactivity-combined",  # the one outputs file tested twice: one family-wise p
    ]
    combined = saved["provenance"][-1]
    smallest = min(radio["test"]["score"]["p_value"], referenced["score"]["p_value"])
    assert combined["p_adjusted"] == pytest.approx(2 * smallest) and combined["significant"]
    assert "Radioactivity tests of one suspect, combined" in html


@pytest.mark.parametrize("line", [b"not json", b'{"prompt": "no output field"}', b"[1, 2]"])
def test_attribute_rejects_a_bad_outputs_file_clearly(tmp_path: Path, line: bytes) -> None:
    outputs = tmp_path / "bad.jsonl"
    outputs.write_bytes(b'{"output": "fine"}\n' + line + b"\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "distillguard.cli",
            "provenance",
            "attribute",
            "--suspect-outputs",
            str(outputs),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DG_DATA_DIR": str(tmp_path / "d"), "COLUMNS": "400"},
        timeout=300,
    )
    assert result.returncode == 2 and "line 2" in result.stderr


@pytest.mark.models
def test_local_suspect_folder_in_both_modes(tmp_path: Path) -> None:
    """A suspect saved as a transformers folder (an untrained student: it never saw the key),
    tested on an account's logged requests in the closed and the open mode: not accused."""
    data = tmp_path / "data"
    log = [
        {
            "request_id": f"r-{index}",
            "account_id": "acct-x",
            "timestamp": 1_795_000_000_000 + index * 1000,
            "messages": [{"role": "user", "content": prompt}],
            "response": answer,
        }
        for index, (prompt, answer) in enumerate(
            zip(attack_pool(500)[:12], _answers(12), strict=True)
        )
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in log) + b"\n")
    distillguard("replay", str(events), data_dir=data)
    folder = tmp_path / "suspect"
    new_student(teacher_tokenizer(TEACHER_DIR), seed=3).save_pretrained(folder)
    for mode in ("closed", "open"):
        case_file = tmp_path / f"{mode}.json"
        distillguard(
            "provenance",
            "test",
            "--model",
            str(folder),
            "--mode",
            mode,
            "--account",
            "acct-x",
            "--out",
            str(case_file),
            data_dir=data,
        )
        case = orjson.loads(case_file.read_bytes())
        assert case["test"]["mode"] == mode and case["suspect"]["kind"] == "local model"
        # an untrained model answers every prompt with the same few tokens; reading, it
        # predicts at every position
        assert case["test"]["score"]["scored"] > (50 if mode == "open" else 0)
        assert case["test"]["score"]["p_value"] > 0.01


@pytest.mark.models
def test_attribution_by_watermark_asks_an_endpoint_and_goes_into_the_report(
    tmp_path: Path,
) -> None:
    """Four accounts each received watermarked answers; the suspect, an OpenAI-style endpoint
    on loopback, repeats the answers one of them received (it memorised them) and answers the
    other accounts' prompts as our model does without the key. Attribution by watermark asks
    it every candidate's logged prompts and names that account; the report shows the case."""
    data = tmp_path / "data"
    teacher = Teacher(TEACHER_DIR)
    marked = watermarked(teacher, WatermarkKey(SECRET.encode()))
    prompts = list(attack_pool(500)[:24])
    settings = GenerationSettings(temperature=0.7, max_tokens=32, seed=9)
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    served = [c[0].text for c in marked.complete(conversations, settings)]
    plain = [c[0].text for c in teacher.complete(conversations, replace(settings, seed=10))]
    owners = [f"acct-{'abcd'[i // 6]}" for i in range(len(prompts))]
    log = [
        {
            "request_id": f"w-{index:03d}",
            "account_id": owner,
            "timestamp": 1_795_000_000_000 + index * 60_000,
            "messages": [{"role": "user", "content": prompt}],
            "response": response,
        }
        for index, (prompt, response, owner) in enumerate(zip(prompts, served, owners, strict=True))
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in log) + b"\n")
    distillguard("replay", str(events), data_dir=data)

    memorised = {p: served[i] if owners[i] == "acct-b" else plain[i] for i, p in enumerate(prompts)}
    suspect = FastAPI()

    @suspect.post("/v1/chat/completions")
    def chat(body: dict) -> dict:
        text = memorised.get(body["messages"][-1]["content"], "")
        return {"choices": [{"message": {"role": "assistant", "content": text}}]}

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(suspect, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    case_file = tmp_path / "watermark-attribution.json"
    try:
        while not server.started:
            time.sleep(0.05)
        accounts = [option for owner in "abcd" for option in ("--account", f"acct-{owner}")]
        distillguard(
            "provenance",
            "attribute",
            "--endpoint",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            *accounts,
            "--out",
            str(case_file),
            data_dir=data,
        )
        refused = subprocess.run(
            [sys.executable, "-m", "distillguard.cli", "provenance", "attribute", "--endpoint"]
            + [f"http://127.0.0.1:{port}/v1/chat/completions", "--account", "acct-a"],
            capture_output=True,
            text=True,
            env={**os.environ, "DG_DATA_DIR": str(data_folder(tmp_path / "other"))},
            timeout=300,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert refused.returncode == 2 and "two --account" in refused.stderr
    case = orjson.loads(case_file.read_bytes())
    ranked = case["accounts"]
    assert case["kind"] == "watermark-attribution" and case["suspect"]["kind"] == "endpoint"
    assert [a["answers"] for a in ranked] == [6, 6, 6, 6]
    assert ranked[0]["account_id"] == "acct-b" and ranked[0]["contrast_p_adjusted"] < 1e-3
    assert all(a["contrast_p_adjusted"] > 0.01 for a in ranked[1:])
    # the same answers by text, and both methods in one ranking
    assert case["by_text"]["outputs"] == 24
    combined = case["combined"]
    assert combined[0]["account_id"] == "acct-b" and combined[0]["p_adjusted"] < 2e-3
    assert combined[0]["p_adjusted"] == min(
        1.0, 2 * min(combined[0]["text_p_adjusted"], combined[0]["watermark_p_adjusted"])
    )
    assert {row["account_id"] for row in combined} >= {"acct-a", "acct-c", "acct-d"}

    html = _html_report(data, "acct-b", tmp_path / "report", case_file)
    assert "Attribution by watermark" in html and html.count("acct-b") >= 3
    assert "Both methods combined" in html


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.models
def test_a_killed_experiment_leaves_no_student_training(tmp_path: Path) -> None:
    """`provenance experiment --jobs 2` killed with -9 while its students train: the spawned
    student processes end too instead of training on for nobody."""
    env = {**os.environ, "DG_DETECTOR": "volume", "DG_WATERMARK_KEY": SECRET}
    env["DG_DATA_DIR"] = str(data_folder(tmp_path / "data"))
    command = [sys.executable, "-m", "distillguard.cli", "provenance", "experiment", "--quick"]
    parent = subprocess.Popen(
        [*command, "--jobs", "2", "--out", str(tmp_path / "out")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        workers: list[int] = []
        while len(workers) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.5)
            # the pool's processes (not its resource tracker): spawn_main(..., pipe_handle=N)
            workers = [pid for pid in _children(parent.pid) if "pipe_handle" in _cmdline(pid)]
        assert len(workers) >= 2, "the student processes never started"
        time.sleep(3)  # into their first students
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(_alive(pid) for pid in workers)
