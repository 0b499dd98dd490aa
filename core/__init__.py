"""The ground floor: types and settings that every DistillGuard package shares.

Nothing here imports another DistillGuard package, so storage, detectors, streaming, services and
provenance can all stand on it without pointing at each other.
"""

__version__ = "0.1.0"
