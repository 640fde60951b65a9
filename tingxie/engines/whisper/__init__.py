"""Whisper on CTranslate2: inference (engine.py), the recognizer and its policy
(recognizer.py), and faster-whisper's serial pipeline for comparison (reference.py)."""
