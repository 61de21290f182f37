"""``cinema token``: dev tokens printed alone on standard output."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import pytest

from shared.auth import AuthSettings, Principal, TokenVerifier
from shared.cli_token import register

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT = {
    "AUTH_JWT_SECRET": "cli-user-tokens-secret-for-tests-32-bytes",
    "AUTH_INTERNAL_SECRET": "cli-internal-tokens-secret-for-tests-32-bytes",
}


@pytest.fixture(autouse=True)
def _auth_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads ``AUTH_*`` like the services do; pin them so tokens can be checked."""
    for name in AuthSettings.model_fields:
        monkeypatch.delenv(f"AUTH_{name.upper()}", raising=False)
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


def verify(token: str) -> Principal:
    return TokenVerifier(AuthSettings()).verify(token)


def run_command(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run ``cinema token ARGV`` through a parser built like the ``cinema`` CLI builds its own."""
    parser = argparse.ArgumentParser(prog="cinema")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["token", *argv])
    exit_code: int = args.handler(args)
    return exit_code, capsys.readouterr().out


class TestTokenCommand:
    def test_printed_token_verifies_to_the_given_user_and_email(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        user_id = uuid4()

        exit_code, out = run_command(capsys, "--user", str(user_id), "--email", "ann@example.com")

        assert exit_code == 0
        assert verify(out.strip()) == Principal(
            subject=str(user_id), user_id=user_id, email="ann@example.com", roles=frozenset()
        )

    def test_admin_flag_gives_an_admin(self, capsys: pytest.CaptureFixture[str]) -> None:
        exit_code, out = run_command(capsys, "--user", str(uuid4()), "--admin")

        assert exit_code == 0
        assert verify(out.strip()).is_admin

    def test_roles_are_given_as_asked(self, capsys: pytest.CaptureFixture[str]) -> None:
        exit_code, out = run_command(
            capsys, "--user", str(uuid4()), "--role", "support", "--role", "finance"
        )

        principal = verify(out.strip())
        assert exit_code == 0
        assert principal.roles == frozenset({"support", "finance"})
        assert not principal.is_admin

    def test_service_flag_gives_an_internal_service_principal(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        exit_code, out = run_command(capsys, "--service")

        principal = verify(out.strip())
        assert exit_code == 0
        assert (principal.subject, principal.is_service, principal.user_id) == ("cli", True, None)

    def test_invalid_uuid_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exited:
            run_command(capsys, "--user", "not-a-uuid")

        assert exited.value.code == 2
        assert "invalid UUID value" in capsys.readouterr().err

    def test_missing_user_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        exit_code, out = run_command(capsys)

        assert exit_code == 2
        assert out == ""

    def test_admin_and_service_together_are_a_usage_error(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            run_command(capsys, "--user", str(uuid4()), "--admin", "--service")

        assert exited.value.code == 2

    def test_rs256_configuration_fails_without_printing_a_token(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AUTH_JWT_ALGORITHM", "RS256")
        monkeypatch.setenv("AUTH_JWKS_URL", "https://auth.cinema/.well-known/jwks.json")

        exit_code, out = run_command(capsys, "--user", str(uuid4()))

        assert exit_code == 1
        assert out == ""


def run_module(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli_token", *argv],
        cwd=ROOT,
        env={**os.environ, **ENVIRONMENT},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestModuleEntryPoint:
    def test_real_process_prints_only_the_token(self) -> None:
        user_id = uuid4()

        completed = run_module("--user", str(user_id), "--admin", "--ttl", "60")

        assert completed.returncode == 0, completed.stderr
        token = completed.stdout.removesuffix("\n")
        assert token.count(".") == 2
        assert " " not in token
        principal = verify(token)
        assert principal.user_id == user_id
        assert principal.is_admin

    def test_real_process_rejects_a_bad_uuid_with_exit_code_2(self) -> None:
        completed = run_module("--user", "42")

        assert completed.returncode == 2
        assert completed.stdout == ""
