"""Radioactivity tests on the real teacher: the open-model test's text-window filter removes the
bias that would accuse the clean teacher itself, and the closed-model test runs against an
OpenAI-style endpoint over real HTTP. Real students (watermarked and clean) are tested by
`provenance experiment --quick` in test_provenance_cli.py."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from provenance.radioactivity import (
    ask,
    closed_model_test,
    endpoint_generator,
    open_model_test,
    open_model_windows,
)
from provenance.watermark import GreenList, WatermarkKey
from students.gateway import JsonlEventLog, create_gateway
from students.prompts import attack_pool
from students.teacher import GenerationSettings, Teacher, watermarked
from tests.conftest import TEACHER_DIR

pytestmark = pytest.mark.models

KEY = WatermarkKey(b"radioactivity-test-key")
FED = 16


@pytest.fixture(scope="module")
def world():
    teacher = Teacher(TEACHER_DIR)
    marked = watermarked(teacher, KEY)
    prompts = list(attack_pool(500)[:FED])
    settings = GenerationSettings(temperature=0.7, max_tokens=32, seed=2)
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    answers = [c[0].text for c in marked.complete(conversations, settings)]
    return {
        "teacher": teacher,
        "marked": marked,
        "prompts": prompts,
        "greens": GreenList(KEY, len(teacher.tokenizer)),
        "fed": list(zip(prompts, answers, strict=True)),
    }


def test_the_clean_teacher_reading_watermarked_text_is_not_accused(world) -> None:
    """The unwatermarked teacher reads its own watermarked answers: its predictions often equal
    the text's next tokens, yet it never learned the key, and the test says so."""
    teacher, greens, fed = world["teacher"], world["greens"], world["fed"]
    for skip in (True, False):
        result = open_model_test(teacher.model, teacher.tokenizer, greens, fed, skip)
        assert result.p_value > 0.01, result
        assert result.score.scored > 300
    filtered = open_model_test(teacher.model, teacher.tokenizer, greens, fed)
    assert filtered.skipped_copyable > 0


def test_copyable_windows_are_those_seen_earlier_in_the_sequence(world) -> None:
    """A text that repeats a phrase: the repeat's predictions are copyable and skipped; the
    first occurrence's are scored."""
    teacher = world["teacher"]
    text = "The cat sat on the mat. " * 3
    kept, skipped = open_model_windows(teacher.model, teacher.tokenizer, [(None, text)], 1)
    ids = teacher.tokenizer(text, add_special_tokens=False)["input_ids"]
    earlier = {(ids[i - 1], ids[i]) for i in range(1, len(ids))}
    assert skipped and all((c[0], t) in earlier for c, t in skipped)
    assert len(kept) + len(skipped) == len(ids)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_closed_model_test_through_an_openai_style_endpoint(world, tmp_path: Path) -> None:
    """Our own watermarked gateway as the 'suspect' over real HTTP: its greedy answers carry
    the watermark; the plain gateway's do not."""
    port = _free_port()
    app = create_gateway(world["marked"], JsonlEventLog(tmp_path / "log.jsonl"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        generate = endpoint_generator(
            f"http://127.0.0.1:{port}/v1/chat/completions", "smollm2", "sk-investigator", 24
        )
        outputs = ask(generate, world["prompts"][:6])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    tokenizer, greens = world["teacher"].tokenizer, world["greens"]
    assert closed_model_test(greens, tokenizer, outputs).p_value < 1e-4
    assert (tmp_path / "log.jsonl").read_text().count("\n") == 6  # every question was logged
