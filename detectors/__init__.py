"""Detectors: per-account signals, fusion into explained verdicts, campaign linking."""
