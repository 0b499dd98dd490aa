"""Streaming: event schema, sources, sinks and the one pipeline every entry point drives."""
