"""Payment providers behind one small protocol (see :mod:`payment_gateway.providers.base`)."""
