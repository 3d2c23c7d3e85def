"""``harness serve``: any harness backend behind an OpenAI-compatible HTTP server (docs/serving.md)."""
