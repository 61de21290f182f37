"""The alert rules and the Grafana dashboard are valid and watch metrics the services export.

``promtool check rules`` (Debian's ``prometheus`` package, which ``.ci/run`` installs) checks the
rule file; a rule or a panel naming a metric no service exports would never fire or show
anything, so each service's ``/metrics`` is scraped in-process after it answered a request and
ran its probes, and every metric name the rules and the dashboard use must be among them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import httpx
import pytest
import sqlalchemy as sa
import yaml
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from access_api.app import create_app as access_app
from access_api.config import AccessSettings
from billing_api.app import create_app as billing_app
from billing_api.config import BillingSettings
from notifier.app import create_app as notifier_app
from notifier.config import NotifierSettings
from payment_gateway.app import create_app as gateway_app
from payment_gateway.config import GatewaySettings
from shared.consumer import declare_consumer
from shared.settings import ServiceSettings
from tests.support import ROOT

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = ROOT / "deploy" / "grafana"
FACTORIES: dict[str, tuple[Callable[[Any], FastAPI], type[ServiceSettings], str]] = {
    "billing_api": (billing_app, BillingSettings, "billing"),
    "payment_gateway": (gateway_app, GatewaySettings, "gateway"),
    "access_api": (access_app, AccessSettings, "access"),
    "notifier": (notifier_app, NotifierSettings, "notifier"),
}
# What PromQL spells with the letters metric names use.
PROMQL_WORDS = {
    "abs", "absent", "and", "avg", "bool", "bottomk", "by", "ceil", "clamp_max", "clamp_min",
    "count", "delta", "deriv", "group_left", "group_right", "histogram_quantile", "ignoring",
    "increase", "irate", "max", "min", "offset", "on", "or", "quantile", "rate", "scalar", "sum",
    "time", "topk", "unless", "vector", "without",
}  # fmt: skip
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"[^"]*"', " ", expression)  # label values (a route has braces)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", text))
    return {word for word in words if word not in PROMQL_WORDS and not word.startswith("$")}


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    expressions = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expressions[f"{path.name}: {panel['title']} {target['refId']}"] = target["expr"]
    return expressions


def exposed_names(exposition: str) -> set[str]:
    """Every name a scrape shows: the ``# TYPE`` families and the samples."""
    names = set(re.findall(r"^# TYPE (\S+) ", exposition, flags=re.MULTILINE))
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", exposition, flags=re.MULTILINE))
    return names


def is_exported(name: str, exported: set[str]) -> bool:
    if name in exported:
        return True
    return any(
        name.endswith(suffix) and name.removesuffix(suffix) in exported for suffix in SUFFIXES
    )


async def scrape(service: str, service_settings: ServiceSettings) -> str:
    """Start the service in-process, use it once, and return its ``/metrics``."""
    factory, settings_class, _ = FACTORIES[service]
    app = factory(settings_class(**service_settings.model_dump()))
    async with app.router.lifespan_context(app):
        await app.state.resources.broker.wait_connected()
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/health/ready")).status_code == 200
            assert (await client.get("/no-such-page")).status_code == 404
            metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    return metrics.text


@pytest.fixture(scope="module")
async def scrapes(service_settings: ServiceSettings) -> dict[str, str]:
    scraped = {}
    for service, (_, _, consumer) in FACTORIES.items():
        # the dead-letter queue exists once its consumer declared it (``make migrate`` does)
        await declare_consumer(service_settings, consumer, [])
        scraped[service] = await scrape(service, service_settings)
    return scraped


class TestRules:
    def test_promtool_accepts_the_rules(self) -> None:
        promtool = shutil.which("promtool")
        assert promtool, "promtool is missing: apt-get install prometheus (.ci/run does)"
        checked = subprocess.run(
            [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"SUCCESS: {len(alert_expressions())} rules found" in checked.stdout

    def test_every_alert_says_what_it_means_and_how_bad_it_is(self) -> None:
        rules = yaml.safe_load(ALERTS.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
                assert rule["annotations"]["summary"], rule["alert"]
                assert len(rule["annotations"]["description"]) > 60, rule["alert"]

    def test_the_issue_s_alerts_are_all_there(self) -> None:
        alerts = alert_expressions()
        watched = set().union(*(metric_names(expr) for expr in alerts.values()))
        for metric in (
            "outbox_oldest_unpublished_age_seconds",
            "consumer_dead_letters",
            "gateway_webhook_events_total",
            "billing_renewals_last_hour",
            "billing_reconcile_backlog_payments",
            "billing_refunds_pending_oldest_age_seconds",
            "http_requests_total",
            "http_request_duration_seconds_bucket",
        ):
            assert metric in watched, f"no alert watches {metric}"


class TestScrapeConfig:
    def test_loads_the_rules_and_names_jobs_after_the_deployments(self) -> None:
        config = yaml.safe_load((ALERTS.parent / "prometheus.yml").read_text())
        assert config["rule_files"] == ["alerts.yml"]
        (scrape,) = config["scrape_configs"]
        jobs = [r for r in scrape["relabel_configs"] if r.get("target_label") == "job"]
        assert jobs[0]["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
        names = set()
        for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc["kind"] == "Deployment":
                    template = doc["spec"]["template"]["metadata"]
                    if template.get("annotations", {}).get("prometheus.io/scrape") == "true":
                        names.add(template["labels"]["app.kubernetes.io/name"])
                        namespace = doc["metadata"]["namespace"]
                        assert (
                            namespace in scrape["kubernetes_sd_configs"][0]["namespaces"]["names"]
                        )
        # the jobs the rules name
        assert {"access-api", "billing-api", "gateway-api", "notifier"} <= names


class TestProbes:
    async def test_an_event_waiting_in_the_outbox_shows_as_outbox_lag(
        self, service_settings: ServiceSettings
    ) -> None:
        # access-api runs no relay: the row stays unpublished while the service is scraped
        engine = create_async_engine(service_settings.database_url)
        event_id = uuid4()
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO access.outbox (id, event_type, payload, created_at)"
                        " VALUES (:id, 'wallet.topped_up', '{}', now() - interval '10 minutes')"
                    ),
                    {"id": event_id},
                )
            text = await scrape("access_api", service_settings)
        finally:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text("DELETE FROM access.outbox WHERE id = :id"), {"id": event_id}
                )
            await engine.dispose()
        pattern = r'^outbox_oldest_unpublished_age_seconds\{schema="access"\} (\S+)$'
        lag = re.search(pattern, text, re.MULTILINE)
        assert lag is not None, text
        assert 600 <= float(lag.group(1)) < 700
        assert 'outbox_unpublished_events{schema="access"} 1.0' in text

    async def test_a_refund_pending_for_two_hours_shows_its_age(
        self, service_settings: ServiceSettings
    ) -> None:
        engine = create_async_engine(service_settings.database_url)
        payment_id, refund_id, user_id = uuid4(), uuid4(), uuid4()
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO billing.payment (id, user_id, purpose, method, status,"
                        " amount, currency, base_amount, discount_amount, quote, months,"
                        " description, refunded_amount) VALUES (:id, :user, 'purchase', 'card',"
                        " 'succeeded', 29900, 'RUB', 29900, 0, '{}', 1, 'A film', 29900)"
                    ),
                    {"id": payment_id, "user": user_id},
                )
                await conn.execute(
                    sa.text(
                        "INSERT INTO billing.refund (id, payment_id, user_id, amount, currency,"
                        " status, rule, created_at) VALUES (:id, :payment, :user, 29900, 'RUB',"
                        " 'pending', 'full refund', now() - interval '2 hours')"
                    ),
                    {"id": refund_id, "payment": payment_id, "user": user_id},
                )
            text = await scrape("billing_api", service_settings)
        finally:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text("DELETE FROM billing.receipt WHERE payment_id = :id"),
                    {"id": payment_id},
                )
                await conn.execute(
                    sa.text("DELETE FROM billing.refund WHERE id = :id"), {"id": refund_id}
                )
                await conn.execute(
                    sa.text("DELETE FROM billing.payment WHERE id = :id"), {"id": payment_id}
                )
            await engine.dispose()
        age = re.search(r"^billing_refunds_pending_oldest_age_seconds (\S+)$", text, re.MULTILINE)
        assert age is not None, text
        assert 7200 <= float(age.group(1)) < 7300
        assert "billing_refunds_pending_long 1.0" in text


class TestExported:
    async def test_every_metric_the_alerts_name_is_exported(self, scrapes: dict[str, str]) -> None:
        exported = set().union(*(exposed_names(text) for text in scrapes.values()))
        for alert, expression in alert_expressions().items():
            missing = {n for n in metric_names(expression) if not is_exported(n, exported)}
            assert not missing, f"{alert} reads {missing}, which no service exports"

    async def test_every_metric_the_dashboard_shows_is_exported(
        self, scrapes: dict[str, str]
    ) -> None:
        expressions = dashboard_expressions()
        assert expressions, "no dashboard in deploy/grafana"
        exported = set().union(*(exposed_names(text) for text in scrapes.values()))
        for panel, expression in expressions.items():
            missing = {n for n in metric_names(expression) if not is_exported(n, exported)}
            assert not missing, f"{panel} reads {missing}, which no service exports"

    async def test_each_service_reports_its_own_outbox_and_dead_letters(
        self, scrapes: dict[str, str]
    ) -> None:
        for service, (_, _, consumer) in FACTORIES.items():
            text = scrapes[service]
            schema = {"billing_api": "billing", "payment_gateway": "gateway"}.get(service, consumer)
            assert f'outbox_oldest_unpublished_age_seconds{{schema="{schema}"}}' in text, service
            if service != "payment_gateway":  # the gateway consumes no events
                dead = rf'^consumer_dead_letters\{{consumer="{consumer}"\}} \d'
                assert re.search(dead, text, re.MULTILINE), f"{service}:\n{text}"

    async def test_billing_reports_renewals_and_reconciliation(
        self, scrapes: dict[str, str]
    ) -> None:
        text = scrapes["billing_api"]
        for outcome in ("succeeded", "failed", "pending"):
            assert f'billing_renewals_last_hour{{outcome="{outcome}"}}' in text
        assert "billing_reconcile_backlog_payments " in text
        assert "billing_refunds_pending_long " in text
        assert "billing_refunds_pending_oldest_age_seconds " in text
        assert 'gateway_webhook_events_total{outcome="failed"}' in scrapes["payment_gateway"]

    def test_dashboard_is_grafana_json_with_a_prometheus_datasource(self) -> None:
        for path in sorted(DASHBOARDS.glob("*.json")):
            dashboard = json.loads(path.read_text())
            assert dashboard["uid"] and dashboard["title"], path
            variables = {v["name"]: v for v in dashboard["templating"]["list"]}
            assert variables["datasource"]["query"] == "prometheus", path
            for panel in dashboard["panels"]:
                if panel["type"] != "row":
                    assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
