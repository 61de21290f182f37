"""Back-office: the admin API under ``/api/v1/admin`` (role ``admin``; some routes also take a
service token, like the ETL's movie bulk upsert)."""
