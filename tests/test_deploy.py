"""The deployment files describe the suite as it is: every process, its probes, its scaling.

There is no Docker engine or cluster in CI: the compose file and nginx.conf are parsed and checked
structurally (``nginx -t`` runs when nginx is installed), and every Kubernetes manifest is validated
against the API schemas with kubernetes-validate (strict: unknown fields are errors).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support import ROOT, SERVICES, procfile

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
HTTP_PROCESSES = {"billing-api": 8000, "gateway-api": 8001, "access-api": 8002, "notifier": 8003}
K8S_VERSION = "1.30.0"


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def process_argv(service: dict[str, Any]) -> list[str]:
    """The ``cinema …`` command a compose service runs (entrypoint ``cinema`` or a shell line)."""
    command = service.get("command", [])
    if service.get("entrypoint") == ["/bin/sh", "-c"]:
        return str(command[-1]).split("exec ")[-1].split()
    return ["cinema", *command]


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path, document))
    return documents


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc["kind"] == kind}


class TestCompose:
    def test_every_procfile_process_runs_from_the_one_image(self) -> None:
        services = load_compose()["services"]
        for name, argv in procfile().items():
            assert name in services, f"{name} is in the Procfile but not in docker-compose.yml"
            service = services[name]
            assert service["image"] == "cinema-billing:latest"
            assert service["build"]["dockerfile"] == "deploy/Dockerfile"
            assert process_argv(service)[:3] == argv[:3], name

    def test_dependencies_have_images_healthchecks_and_the_management_plugin(self) -> None:
        services = load_compose()["services"]
        assert services["postgres"]["image"].startswith("postgres:")
        assert services["rabbitmq"]["image"].endswith("-management")
        for name in ("postgres", "rabbitmq", "nginx"):
            assert services[name]["healthcheck"]["test"], name
            assert services[name]["restart"] == "unless-stopped", name

    def test_replicas_count_the_limits_against_abuse_in_the_compose_redis(self) -> None:
        compose = load_compose()
        assert compose["services"]["redis"]["image"].startswith("redis:")
        env = compose["x-suite-env"]
        for prefix in ("BILLING", "GATEWAY"):
            assert env[f"{prefix}_RATE_LIMIT_STORAGE_URL"] == "redis://redis:6379/0", prefix

    def test_migration_one_shot_runs_every_service_migration_before_the_processes(self) -> None:
        services = load_compose()["services"]
        migrate = services["migrate"]
        assert migrate["restart"] == "no"
        script = migrate["command"][0]
        assert "cinema prepare" in script
        assert "alembic -n" in script
        for service in SERVICES:
            assert service in script
        assert "declare-queues" in script, "consumers' queues exist before anything publishes"
        for name in procfile():
            depends = services[name]["depends_on"]
            assert depends["migrate"]["condition"] == "service_completed_successfully", name
            assert depends["postgres"]["condition"] == "service_healthy", name
            assert depends["rabbitmq"]["condition"] == "service_healthy", name
            assert services[name]["restart"] == "unless-stopped", name

    def test_http_processes_check_their_readiness_and_nginx_waits_for_them(self) -> None:
        services = load_compose()["services"]
        for name, port in HTTP_PROCESSES.items():
            test = " ".join(services[name]["healthcheck"]["test"])
            assert f"127.0.0.1:{port}/health/ready" in test, name
            assert services["nginx"]["depends_on"][name]["condition"] == "service_healthy"
            assert services[name]["command"][-1] == str(port)

    def test_the_local_setup_says_it_runs_in_development(self) -> None:
        compose = ROOT / "docker-compose.yml"
        for name in procfile():
            assert load_compose()["services"][name]["environment"]["CINEMA_ENV"] == "development"
        assert re.search(
            r"#.*development mode.*\n(.*#.*\n)*\s*CINEMA_ENV: development", compose.read_text()
        )

    def test_service_ports_stay_behind_nginx(self) -> None:
        services = load_compose()["services"]
        for name in procfile():
            assert "ports" not in services[name], f"{name} is published past nginx"
        assert services["nginx"]["volumes"] == ["./deploy/nginx.conf:/etc/nginx/nginx.conf:ro"]


class TestNginx:
    CONF = (DEPLOY / "nginx.conf").read_text()

    def location(self, prefix: str) -> str:
        match = re.search(r"location\s+" + re.escape(prefix) + r"\s*\{(.*?)\}", self.CONF, re.S)
        assert match, f"no location {prefix}"
        return match.group(1)

    @pytest.mark.parametrize(
        ("prefix", "upstream"),
        [
            ("/billing/", "billing_api"),
            ("/payments/", "gateway_api"),
            ("/access/", "access_api"),
            ("/notifications/", "notifier"),
            ("^~ /api/v1/access/", "access_api"),
            ("/api/v1/", "billing_api"),
            ("/webhooks/", "gateway_api"),
        ],
    )
    def test_routes_each_prefix_to_its_service(self, prefix: str, upstream: str) -> None:
        assert f"proxy_pass http://{upstream}" in self.location(prefix)

    def test_upstreams_name_the_compose_services(self) -> None:
        for name, port in HTTP_PROCESSES.items():
            assert f"server {name}:{port};" in self.CONF

    def test_internal_api_and_ops_endpoints_are_not_public(self) -> None:
        assert "return 404" in self.location("^~ /internal/")
        blocked = re.search(r"location ~ \^/\((.*?)\)/\((.*?)\)", self.CONF)
        assert blocked
        prefixes = set(blocked.group(1).split("|"))
        assert prefixes == {"billing", "payments", "access", "notifications"}
        assert {"internal", "metrics", "health"} <= set(blocked.group(2).split("|"))

    def test_braces_balance(self) -> None:
        text = re.sub(r"'[^']*'", "", re.sub(r"#.*", "", self.CONF))
        assert text.count("{") == text.count("}")

    def test_nginx_accepts_the_configuration(self, tmp_path: Path) -> None:
        # Fails loudly without nginx (`.ci/run` installs Debian's nginx-light), never skips.
        assert shutil.which("nginx"), "nginx is needed to check the configuration: install it"
        # The upstream names resolve only inside compose's network: point them at loopback.
        conf = self.CONF
        for name in HTTP_PROCESSES:
            conf = conf.replace(f"server {name}:", "server 127.0.0.1:")
        path = tmp_path / "nginx.conf"
        path.write_text(conf)
        done = subprocess.run(
            ["nginx", "-t", "-c", str(path), "-p", str(tmp_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr


class TestKubernetes:
    @pytest.mark.parametrize(
        ("path", "document"),
        k8s_documents(),
        ids=lambda value: value.name if isinstance(value, Path) else "",
    )
    def test_manifest_is_valid(self, path: Path, document: dict[str, Any]) -> None:
        if document["kind"] == "Kustomization":
            for resource in document["resources"]:
                assert (K8S / resource).exists(), resource
            return
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)

    def test_every_procfile_process_is_a_deployment(self) -> None:
        deployments = by_kind("Deployment")
        for name, argv in procfile().items():
            assert name in deployments, f"{name} has no Deployment"
            container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
            assert container["args"][:2] == argv[1:3], name

    def test_every_deployment_requests_resources_and_has_a_disruption_budget(self) -> None:
        budgets = by_kind("PodDisruptionBudget")
        for name, deployment in by_kind("Deployment").items():
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert container["envFrom"] == [
                {"configMapRef": {"name": "cinema-billing-config"}},
                {"secretRef": {"name": "cinema-billing-secrets"}},
            ]
            assert budgets[name]["spec"]["selector"] == deployment["spec"]["selector"], name

    def test_http_deployments_probe_readiness_and_liveness_and_have_a_service(self) -> None:
        deployments = by_kind("Deployment")
        services = by_kind("Service")
        for name, port in HTTP_PROCESSES.items():
            container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
            assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
            assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
            assert container["ports"][0]["containerPort"] == port
            assert services[name]["spec"]["ports"][0]["port"] == port

    def test_apis_scale_horizontally_on_cpu(self) -> None:
        autoscalers = by_kind("HorizontalPodAutoscaler")
        for name in HTTP_PROCESSES:
            target = autoscalers[name]["spec"]["scaleTargetRef"]
            assert (target["kind"], target["name"]) == ("Deployment", name)
            assert autoscalers[name]["spec"]["minReplicas"] >= 2

    def test_migration_job_runs_every_service_migration(self) -> None:
        job = by_kind("Job")["cinema-migrate"]
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        script = pod["containers"][0]["args"][0]
        for service in SERVICES:
            assert f"{service} " in script or f"{service};" in script

    def test_config_and_secret_template_cover_every_service(self) -> None:
        config = by_kind("ConfigMap")["cinema-billing-config"]["data"]
        secret = by_kind("Secret")["cinema-billing-secrets"]["stringData"]
        for prefix in ("BILLING", "GATEWAY", "ACCESS", "NOTIFIER", "ETL"):
            assert f"{prefix}_DATABASE_URL" in secret
            assert f"{prefix}_AMQP_URL" in secret
            assert f"{prefix}_LOG_LEVEL" in config
        assert "ETL_SOURCE_URL" in secret
        assert "ETL_BILLING_URL" in config
        kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
        assert "secret.example.yaml" not in kustomization["resources"]

    def test_secret_template_lists_every_secret_and_the_processes_run_in_production(
        self,
    ) -> None:
        from pydantic import SecretStr
        from pydantic_settings import BaseSettings

        from access_api.config import AccessSettings
        from billing_api.config import AdminUISettings
        from notifier.config import NotifierSettings
        from payment_gateway.config import GatewaySettings
        from shared.auth import AuthSettings

        classes: list[type[BaseSettings]] = [
            AuthSettings,
            AdminUISettings,
            GatewaySettings,
            NotifierSettings,
            AccessSettings,
        ]
        template = (K8S / "secret.example.yaml").read_text()
        for settings in classes:
            prefix = str(settings.model_config.get("env_prefix", ""))
            for name, field in settings.model_fields.items():
                if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ())):
                    variable = f"{prefix}{name}".upper()
                    assert re.search(rf"^\s*#?\s*{variable}:", template, re.M), variable
        config = by_kind("ConfigMap")["cinema-billing-config"]["data"]
        assert config["CINEMA_ENV"] == "production"
