"""Frozen pydantic models for every schema of the specification. No I/O happens here."""
