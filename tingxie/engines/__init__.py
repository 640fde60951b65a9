"""Model families behind one recognizer protocol (base.py), found by registry.py."""

from .base import (
    Capabilities,
    ModelError,
    ModelSpec,
    Recognizer,
    StreamingRecognizer,
    StreamSession,
    TaggedResult,
    check_options,
)
from .registry import FAMILIES, describe, detect_family, load, validate

__all__ = [
    "FAMILIES",
    "Capabilities",
    "ModelError",
    "ModelSpec",
    "Recognizer",
    "StreamSession",
    "StreamingRecognizer",
    "TaggedResult",
    "check_options",
    "describe",
    "detect_family",
    "load",
    "validate",
]
