"""Families served through sherpa-onnx (models.py)."""
