"""DistillGuard: catch model-extraction (distillation) attacks against an LLM API and prove them."""

from core import __version__

__all__ = ["__version__"]
