"""The back office's reports: the revenue dashboard's figures and the CSV exports.

``period`` checks the asked period (UTC days, at most a year), ``service`` computes every figure
of the summary from the payments, refunds, ledger and subscription tables in one currency,
``csv_export`` streams payments and ledger lines, ``svg`` draws the dashboard's charts without
any script or CDN, ``api`` serves them under ``/api/v1/admin/reports`` (role ``admin``; the
roles allowed are named once, in :data:`billing_api.reports.api.REPORT_ROLES`).
"""
