"""The back-office web UI at ``/admin`` (sqladmin) over billing's tables.

* **Login**: an admin JWT pasted as the password (any username), or the configured
  ``BILLING_ADMIN_USERNAME``/``BILLING_ADMIN_PASSWORD`` (unset by default: JWT login only).
  A non-admin token or wrong credentials are refused; every page without a live session
  redirects to the login page.
* **Session**: a signed cookie (``BILLING_ADMIN_SESSION_SECRET``) scoped to ``/admin``,
  ``SameSite=Strict`` and ``HttpOnly``, so other sites' pages cannot make a logged-in browser
  submit the UI's forms; requests that change something must also come from our own origin
  (``Origin``/``Referer`` checked), belt and braces.
* **Edits go through the admin services**, the same functions as the admin API, so plan changes
  emit ``plan.changed`` and every change writes its audit row in the same transaction. Money
  tables (payments, refunds, ledger) and the audit trail are read-only here.
"""
