"""tingxie (听写): self-hosted speech recognition with cross-request batching."""

__version__ = "0.1.0"
