"""The customer portal: server-rendered pages where a subscriber sees and manages their billing.

An app asks for a single-use link (``POST /api/v1/portal-sessions``, :mod:`.api`); opening it in
a browser starts a session in a signed cookie (:mod:`.sessions`); the pages (:mod:`.pages`) show
what :mod:`.views` gathers from the same services the API uses, and their forms act through
those services too, each guarded by a CSRF token (:mod:`.csrf`) and acting once
(:mod:`.forms`). Pages speak Russian or English (:mod:`.phrases`).
"""
