"""Streaming: sources, the one loop, the pipeline and the sinks every entry point drives."""
