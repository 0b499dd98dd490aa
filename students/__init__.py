"""Companion: real teacher, real-prompt traffic, attack strategies and real student distillation."""
