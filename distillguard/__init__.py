"""DistillGuard: catch model-extraction (distillation) attacks against an LLM API and prove them."""

__version__ = "0.1.0"
