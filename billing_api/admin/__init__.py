"""Back-office: the admin API under ``/api/v1/admin`` (role ``admin``; some routes also take a
service token, like the ETL's movie bulk upsert) and the web UI at ``/admin``.

One package per back-office domain — ``plans``, ``movies``, ``discounts``, ``customers``,
``audit`` — each with ``api.py`` (routes), ``service.py`` (the behaviour) and ``schemas.py``;
``api.py`` here lists their routers. ``ui`` is the web UI, whose edits run the same services.
"""
