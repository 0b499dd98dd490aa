"""Radioactivity on real students of the real teacher: a student trained on watermarked answers
is caught by the closed-model test, one trained on the same teacher's plain answers is not; the
open-model test's text-window filter removes the bias that would accuse the clean teacher itself;
the closed test also runs against an OpenAI-style endpoint over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from provenance.experiment import watermarked
from provenance.radioactivity import (
    ask,
    closed_model_test,
    endpoint_generator,
    local_generator,
    open_model_test,
)
from provenance.watermark import GreenList, WatermarkKey
from students.distill import Pair, teacher_embeddings, train_student
from students.gateway import JsonlEventLog, create_gateway
from students.prompts import attack_pool
from students.teacher import GenerationSettings, Teacher

KEY = WatermarkKey(b"radioactivity-test-key")
TRAIN, FED = 24, 16


@pytest.fixture(scope="module")
def world():
    teacher = Teacher(Path(".distillguard/teacher"))
    marked = watermarked(teacher, KEY)
    prompts = list(attack_pool(500)[: TRAIN + FED])
    settings = GenerationSettings(temperature=0.7, max_tokens=32, seed=2)
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    plain = [c[0].text for c in teacher.complete(conversations[:TRAIN], settings)]
    marked_answers = [c[0].text for c in marked.complete(conversations, settings)]
    base = teacher_embeddings(teacher.model)

    def student(answers: list[str]):
        pairs = [Pair(p, a) for p, a in zip(prompts[:TRAIN], answers, strict=True)]
        return train_student(teacher.tokenizer, pairs, base_embeddings=base, min_steps=40)

    return {
        "teacher": teacher,
        "marked": marked,
        "prompts": prompts,
        "greens": GreenList(KEY, len(teacher.tokenizer)),
        "radioactive": student(marked_answers[:TRAIN]),
        "clean": student(plain),
        "fed": list(zip(prompts[TRAIN:], marked_answers[TRAIN:], strict=True)),
    }


def test_closed_model_test_catches_the_watermarked_student_only(world) -> None:
    tokenizer, greens, prompts = world["teacher"].tokenizer, world["greens"], world["prompts"]
    results = {}
    for name in ("radioactive", "clean"):
        outputs = ask(local_generator(world[name], tokenizer, 32), prompts[:TRAIN])
        results[name] = closed_model_test(greens, tokenizer, outputs)
    assert results["radioactive"].p_value < 1e-4, results
    assert results["clean"].p_value > 0.01, results
    assert results["radioactive"].score.scored > 200


def test_open_model_filter_removes_the_copying_bias(world) -> None:
    """The unwatermarked teacher reading its own watermarked answers predicts their tokens, so
    scoring those predictions accuses it; skipping the text's own windows does not."""
    teacher, greens, fed = world["teacher"], world["greens"], world["fed"]
    biased = open_model_test(teacher.model, teacher.tokenizer, greens, fed, False)
    fair = open_model_test(teacher.model, teacher.tokenizer, greens, fed)
    assert biased.p_value < 1e-3, biased
    assert fair.p_value > 0.01, fair
    assert fair.skipped_text_windows > 0 and fair.score.scored > 100
    clean = open_model_test(world["clean"], teacher.tokenizer, greens, fed)
    assert clean.p_value > 0.01, clean


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
