"""The whole purchase story, told against a running suite (``make demo``; the e2e test too)."""
