"""CINEMA_ENV: outside development no process starts with a missing or development secret.

Each process is started as a real ``cinema …`` command, the way Kubernetes and the Procfile start
them, with an environment built here (the developer's shell never leaks into it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared import production
from tests import support

CINEMA = str(Path(sys.executable).with_name("cinema"))
REFUSED_WITHIN = 30.0  # seconds; a Python start-up on a busy two-core machine, not a time-out
STRONG = {
    "AUTH_JWT_SECRET": "u" * 20 + "-auth-service-secret-of-this-deployment",
    "AUTH_INTERNAL_SECRET": "i" * 20 + "-internal-token-secret-of-this-deployment",
    "BILLING_ADMIN_SESSION_SECRET": "s" * 20 + "-admin-cookie-secret-of-this-deployment",
    "BILLING_PORTAL_SECRET": "p" * 20 + "-portal-cookie-secret-of-this-deployment",
    "GATEWAY_SANDBOX_WEBHOOK_SECRET": "w" * 20 + "-sandbox-webhook-secret-of-this-deployment",
    "NOTIFIER_WEBHOOK_SECRET": "n" * 20 + "-notifier-webhook-secret-of-this-deployment",
}
SECRET_PREFIXES = (
    "AUTH_",
    "BILLING_ADMIN_",
    "GATEWAY_SANDBOX",
    "GATEWAY_STRIPE",
    "GATEWAY_YOOKASSA",
    "GATEWAY_PROVIDER",
    "NOTIFIER_WEBHOOK",
    "CINEMA_ENV",
)


def environment(
    database_url: str, broker_prefix: str, mode: str | None, **extra: str
) -> dict[str, str]:
    """The suite's environment without any secret, in ``mode`` (unset: the default)."""
    env = {
        name: value
        for name, value in support.suite_environment(database_url, broker_prefix).items()
        if not name.upper().startswith(SECRET_PREFIXES)
    }
    if mode is not None:
        env["CINEMA_ENV"] = mode
    return env | extra


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CINEMA, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=REFUSED_WITHIN,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def named_variables(stderr: str) -> set[str]:
    return {
        match.group(1)
        for line in stderr.splitlines()
        if (match := re.match(r"cinema: ([A-Z][A-Z0-9_]+) ", line)) and match.group(1).isupper()
    }


def wait_live(process: subprocess.Popen[bytes], port: int) -> int:
    """The status of /health/live once the process answers (or fail if it exits first)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).status_code
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("no answer on /health/live within 60 s")


def start_api(env: dict[str, str], service: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = support.free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [CINEMA, service, "api", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    return process, port


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class TestEnvironment:
    @pytest.mark.parametrize(
        ("value", "mode"),
        [
            (None, "production"),
            ("", "production"),
            ("production", "production"),
            ("development", "development"),
            (" Development ", "development"),
            ("dev", "production"),  # anything but "development" is the safe side
            ("staging", "production"),
        ],
    )
    def test_production_unless_development_is_said(self, value: str | None, mode: str) -> None:
        environ = {} if value is None else {"CINEMA_ENV": value}

        assert production.environment(environ) == mode


class TestSecretProblem:
    DEV = "dev-only-secret-change-me-in-prod"

    @pytest.mark.parametrize(
        ("environ", "value", "problem"),
        [
            ({}, DEV, "X_SECRET is not set"),
            ({"X_SECRET": ""}, "", "X_SECRET is not set"),
            ({"X_SECRET": DEV}, DEV, "X_SECRET is still the development value from the repository"),
            (
                {"X_SECRET": "CHANGE-ME-" + "a" * 40},
                "CHANGE-ME-" + "a" * 40,
                "X_SECRET is still a placeholder (it contains CHANGE-ME)",
            ),
            (
                {"X_SECRET": "secret"},
                "secret",
                "X_SECRET is too short: use at least 32 random characters",
            ),
            ({"x_secret": "k" * 32}, "k" * 32, None),
        ],
    )
    def test_each_weakness_is_named(
        self, environ: dict[str, str], value: str, problem: str | None
    ) -> None:
        found = production.secret_problem(
            "X_SECRET", value, development_value=self.DEV, environ=environ
        )

        assert found == problem


class TestBillingApi:
    def test_production_without_secrets_exits_at_once_naming_each_variable(
        self, database_url: str, broker_prefix: str
    ) -> None:
        env = environment(database_url, broker_prefix, None)  # production is the default
        started = time.monotonic()

        done = run(env, "billing", "api", "--port", str(support.free_port()))

        assert done.returncode == production.EXIT_NOT_READY
        assert time.monotonic() - started < REFUSED_WITHIN
        assert "Traceback" not in done.stderr
        assert named_variables(done.stderr) == {
            "AUTH_JWT_SECRET",
            "AUTH_INTERNAL_SECRET",
            "BILLING_ADMIN_SESSION_SECRET",
            "BILLING_PORTAL_SECRET",
        }

    def test_production_with_the_development_secrets_is_refused(
        self, database_url: str, broker_prefix: str
    ) -> None:
        # What docker-compose.yml or a copied .env would hand a deployment that forgot them.
        env = environment(
            database_url,
            broker_prefix,
            "production",
            AUTH_JWT_SECRET="dev-only-user-token-secret-change-me-in-prod",
            AUTH_INTERNAL_SECRET="dev-only-internal-token-secret-change-me-in-prod",
            BILLING_ADMIN_SESSION_SECRET=STRONG["BILLING_ADMIN_SESSION_SECRET"],
            BILLING_PORTAL_SECRET="dev-only-portal-secret-change-me-in-prod",
        )

        done = run(env, "billing", "api", "--port", str(support.free_port()))

        assert done.returncode == production.EXIT_NOT_READY
        assert named_variables(done.stderr) == {
            "AUTH_JWT_SECRET",
            "AUTH_INTERNAL_SECRET",
            "BILLING_PORTAL_SECRET",
        }

    def test_production_with_strong_secrets_starts(
        self, database_url: str, broker_prefix: str, tmp_path: Path
    ) -> None:
        env = environment(database_url, broker_prefix, "production", **STRONG)
        process, port = start_api(env, "billing", tmp_path / "billing.log")
        try:
            assert wait_live(process, port) == 200
        finally:
            stop(process)

    def test_development_starts_with_the_repository_secrets(
        self, database_url: str, broker_prefix: str, tmp_path: Path
    ) -> None:
        env = environment(database_url, broker_prefix, "development")
        process, port = start_api(env, "billing", tmp_path / "billing.log")
        try:
            assert wait_live(process, port) == 200
        finally:
            stop(process)


class TestEveryProcess:
    @pytest.mark.parametrize(
        ("command", "variables"),
        [
            (("billing", "worker"), {"BILLING_ADMIN_SESSION_SECRET", "BILLING_PORTAL_SECRET"}),
            (("billing", "run-jobs"), {"BILLING_ADMIN_SESSION_SECRET", "BILLING_PORTAL_SECRET"}),
            (("access", "api"), set()),
            (("access", "worker"), set()),
            (("notifier", "api"), set()),
            (("etl", "run", "--once"), set()),
            (("token", "--service"), set()),
            (("gateway", "api"), {"GATEWAY_STRIPE_API_KEY"}),
        ],
        ids=lambda value: " ".join(value) if isinstance(value, tuple) else "",
    )
    def test_refuses_to_start_without_secrets(
        self,
        database_url: str,
        broker_prefix: str,
        command: tuple[str, ...],
        variables: set[str],
    ) -> None:
        env = environment(database_url, broker_prefix, "production")

        done = run(env, *command)

        assert done.returncode == production.EXIT_NOT_READY, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""
        assert named_variables(done.stderr) == {
            "AUTH_JWT_SECRET",
            "AUTH_INTERNAL_SECRET",
            *variables,
        }


class TestGateway:
    def test_sandbox_is_off_in_production_unless_enabled(
        self, database_url: str, broker_prefix: str
    ) -> None:
        secrets = {k: v for k, v in STRONG.items() if k != "GATEWAY_SANDBOX_WEBHOOK_SECRET"}
        env = environment(database_url, broker_prefix, "production", **secrets)

        done = run(env, "gateway", "api", "--port", str(support.free_port()))

        assert done.returncode == production.EXIT_NOT_READY
        assert "the sandbox is off outside development" in done.stderr

    def test_enabled_sandbox_needs_its_own_webhook_secret(
        self, database_url: str, broker_prefix: str
    ) -> None:
        secrets = {k: v for k, v in STRONG.items() if k != "GATEWAY_SANDBOX_WEBHOOK_SECRET"}
        env = environment(
            database_url, broker_prefix, "production", GATEWAY_SANDBOX_ENABLED="true", **secrets
        )

        done = run(env, "gateway", "api", "--port", str(support.free_port()))

        assert done.returncode == production.EXIT_NOT_READY
        assert named_variables(done.stderr) == {"GATEWAY_SANDBOX_WEBHOOK_SECRET"}

    def test_stripe_needs_its_webhook_secret(self, database_url: str, broker_prefix: str) -> None:
        env = environment(
            database_url,
            broker_prefix,
            "production",
            GATEWAY_STRIPE_API_KEY="sk_test_" + "x" * 40,
            **STRONG,
        )

        done = run(env, "gateway", "api", "--port", str(support.free_port()))

        assert done.returncode == production.EXIT_NOT_READY
        assert named_variables(done.stderr) == {"GATEWAY_STRIPE_WEBHOOK_SECRET"}

    def test_yookassa_needs_its_own_secret_key(self, database_url: str, broker_prefix: str) -> None:
        env = environment(
            database_url,
            broker_prefix,
            "production",
            GATEWAY_YOOKASSA_SHOP_ID="506751",
            GATEWAY_YOOKASSA_SECRET_KEY="test_CHANGE-ME",
            **STRONG,
        )

        done = run(env, "gateway", "api", "--port", str(support.free_port()))

        assert done.returncode == production.EXIT_NOT_READY
        assert named_variables(done.stderr) == {"GATEWAY_YOOKASSA_SECRET_KEY"}

    def test_sandbox_pages_are_not_served_in_production_with_stripe(
        self, database_url: str, broker_prefix: str, tmp_path: Path
    ) -> None:
        env = environment(
            database_url,
            broker_prefix,
            "production",
            GATEWAY_STRIPE_API_KEY="sk_test_" + "x" * 40,
            GATEWAY_STRIPE_WEBHOOK_SECRET="whsec_" + "y" * 40,
            **STRONG,
        )
        process, port = start_api(env, "gateway", tmp_path / "gateway.log")
        try:
            assert wait_live(process, port) == 200
            page = httpx.get(f"http://127.0.0.1:{port}/sandbox/checkout/anything", timeout=5)
            assert page.status_code == 404
        finally:
            stop(process)


class TestNotifier:
    def test_the_webhook_needs_its_secret(self, database_url: str, broker_prefix: str) -> None:
        secrets = {k: v for k, v in STRONG.items() if k != "NOTIFIER_WEBHOOK_SECRET"}
        env = environment(
            database_url,
            broker_prefix,
            "production",
            NOTIFIER_WEBHOOK_URL="https://notify.example/hooks/billing",
            **secrets,
        )

        done = run(env, "notifier", "api", "--port", str(support.free_port()))

        assert done.returncode == production.EXIT_NOT_READY
        assert named_variables(done.stderr) == {"NOTIFIER_WEBHOOK_SECRET"}


def test_the_shell_running_the_tests_is_in_development() -> None:
    assert os.environ["CINEMA_ENV"] == "development"
