"""The sandbox payment provider: a built-in stand-in for a card processor.

It behaves like a remote provider: it keeps its own tables, hosts a checkout page, and reports
results to the gateway only through signed webhooks delivered asynchronously and retried until
acknowledged, so development, demos and tests exercise the production path.
"""
