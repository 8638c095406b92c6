"""aiclient: an LLM provider-pool proxy, drop-in compatible with AIClient-2-API."""

__version__ = "0.1.0"
__all__ = ["__version__"]
