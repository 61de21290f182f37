"""Production mode: ``CINEMA_ENV`` and what a process refuses to start without.

``CINEMA_ENV`` is ``production`` unless it is exactly ``development`` (any other value, a typo
included, is production: the safe side). In development everything starts as it always did, with
the development secrets that are in the repository. Outside development a process checks, before
it opens anything, that every secret it uses is set to a value of its own, and refuses to start
otherwise: :func:`check` raises :class:`NotReadyForProduction` with one line per offending
variable, and the ``cinema`` command line prints those lines and exits with status 78 (EX_CONFIG),
without a traceback.

A secret is refused when it is missing, equal to the development value from the repository, still
a placeholder (contains ``CHANGE-ME``, as in ``deploy/k8s/secret.example.yaml``) or shorter than
:data:`MIN_SECRET_LENGTH` characters. Each settings class says which secrets it uses through a
``production_problems()`` method (a secret is required only when what it protects is switched on:
the Stripe webhook secret with a Stripe key, the notifier's webhook secret with the webhook).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Protocol

from pydantic import SecretStr

ENVIRONMENT_VARIABLE = "CINEMA_ENV"
DEVELOPMENT = "development"
PRODUCTION = "production"
MIN_SECRET_LENGTH = 32
"""HMAC keys at least as long as SHA-256's output (RFC 7518 §3.2), counted in characters."""
EXIT_NOT_READY = 78
"""The exit status of a process that refuses to start (``EX_CONFIG`` of sysexits.h)."""
GENERATE_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
_PLACEHOLDERS = ("change-me", "change_me", "changeme")


def environment(environ: Mapping[str, str] | None = None) -> str:
    """``development`` when ``CINEMA_ENV`` says exactly that, else ``production``."""
    value = (os.environ if environ is None else environ).get(ENVIRONMENT_VARIABLE, "")
    return DEVELOPMENT if value.strip().lower() == DEVELOPMENT else PRODUCTION


def is_development(environ: Mapping[str, str] | None = None) -> bool:
    return environment(environ) == DEVELOPMENT


def _is_set(variable: str, environ: Mapping[str, str]) -> bool:
    # pydantic-settings reads variables case-insensitively; so does this.
    wanted = variable.lower()
    return any(name.lower() == wanted and value != "" for name, value in environ.items())


def _text(value: SecretStr | str | None) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def secret_problem(
    variable: str,
    value: SecretStr | str | None,
    *,
    development_value: SecretStr | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """Why ``variable`` (whose value the settings read as ``value``) is not fit for production,
    or ``None`` when it is."""
    environ = os.environ if environ is None else environ
    text, development = _text(value), _text(development_value)
    if text is None or not text.strip() or not _is_set(variable, environ):
        return f"{variable} is not set"
    if development is not None and text == development:
        return f"{variable} is still the development value from the repository"
    if any(marker in text.lower() for marker in _PLACEHOLDERS):
        return f"{variable} is still a placeholder (it contains CHANGE-ME)"
    if len(text) < MIN_SECRET_LENGTH:
        return f"{variable} is too short: use at least {MIN_SECRET_LENGTH} random characters"
    return None


class Checked(Protocol):
    """Settings that can say what keeps them from running in production."""

    def production_problems(self) -> list[str]: ...


class NotReadyForProduction(Exception):
    """A process was asked to start outside development with missing or development secrets."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))

    def lines(self, program: str = "cinema") -> list[str]:
        """What the command line prints: one line per problem, then how to fix them."""
        return [f"{program}: {problem}" for problem in self.problems] + [
            f"{program}: refusing to start with {ENVIRONMENT_VARIABLE}={environment()}: generate"
            f" each secret with `{GENERATE_HINT}`, or set {ENVIRONMENT_VARIABLE}={DEVELOPMENT}"
            " on a developer machine (README: Production checklist)"
        ]


def check(*settings: Checked) -> None:
    """Refuse to go on outside development while any of ``settings`` has a problem."""
    if is_development():
        return
    problems = list(dict.fromkeys(p for item in settings for p in item.production_problems()))
    if problems:
        raise NotReadyForProduction(problems)
