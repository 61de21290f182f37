"""Schema fuzzing: every HTTP service answers whatever schemathesis sends the way its OpenAPI says.

Each service's app runs in-process (ASGI) on a scratch database and broker prefix. Cases go out
with a user's, an admin's or a service's token (spread over the cases), so the checks see
the authorised paths as well as the refusals. The checks are all of schemathesis's: no 5xx,
status codes, headers and bodies as documented, malformed or wrongly typed input refused with a
documented 4xx, and a method a path does not have answered 405 with an ``Allow`` that lists
exactly the path's methods.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)
from schemathesis.python import asgi
from schemathesis.schemas import APIOperation

from access_api.app import create_app as access_app
from access_api.config import AccessSettings
from billing_api.app import create_app as billing_app
from billing_api.config import BillingSettings
from notifier.app import create_app as notifier_app
from notifier.config import NotifierSettings
from payment_gateway.app import create_app as gateway_app
from payment_gateway.config import GatewaySettings
from shared.auth import AuthSettings, mint_service_token, mint_user_token
from shared.settings import ServiceSettings
from tests import support
from tests.fuzz.conftest import served_in_thread

FACTORIES: dict[str, tuple[Callable[[Any], FastAPI], type[ServiceSettings]]] = {
    "billing": (billing_app, BillingSettings),
    "gateway": (gateway_app, GatewaySettings),
    "access": (access_app, AccessSettings),
    "notifier": (notifier_app, NotifierSettings),
}

FUZZ_USER = UUID("00000000-0000-4000-8000-00000000f022")
AUTH = AuthSettings()
TOKENS = {
    "user": mint_user_token(AUTH, FUZZ_USER, email="fuzz@example.com", ttl_seconds=3600),
    "admin": mint_user_token(AUTH, FUZZ_USER, email="ops@example.com", roles=["admin"]),
    "service": mint_service_token(AUTH, "fuzzer", ttl_seconds=3600),
}


def settings_for(service: str, scratch: ServiceSettings, **extra: Any) -> Any:
    _, settings_class = FACTORIES[service]
    return settings_class(**scratch.model_dump(), **extra)


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def api(
    request: pytest.FixtureRequest, scratch_settings: ServiceSettings
) -> Iterator[schemathesis.BaseSchema]:
    service: str = request.param
    # Nothing the fuzzed services send may reach a real suite on the default ports.
    nowhere = f"http://127.0.0.1:{support.free_port()}"
    with contextlib.ExitStack() as stack:
        extra: dict[str, Any] = {}
        if service == "billing":
            # billing calls the gateway: a real one, so checkouts and refunds get their answers
            gateway_port = support.free_port()
            gateway = gateway_app(
                settings_for(
                    "gateway", scratch_settings, public_url=f"http://127.0.0.1:{gateway_port}"
                )
            )
            extra["gateway_url"] = stack.enter_context(served_in_thread(gateway, gateway_port))
        elif service == "gateway":
            extra["public_url"] = nowhere
        elif service == "notifier":
            extra.update(smtp_port=int(nowhere.rsplit(":", 1)[1]), max_attempts=1)
        factory, _ = FACTORIES[service]
        app = factory(settings_for(service, scratch_settings, **extra))
        try:
            # Loading the document starts the app's lifespan; fuzz once its broker is connected.
            schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
            deadline = time.monotonic() + 20
            while not app.state.resources.broker.is_connected:
                assert time.monotonic() < deadline, f"{service} did not connect to RabbitMQ"
                time.sleep(0.05)
            yield schema
        finally:
            asgi.shutdown_lifespans()


# Schema-valid input may still break a rule the schema cannot state (an unknown currency, a promo
# code that does not exist, more months than the plan allows): the documented 422 says so. And a
# limit may refuse it (wrong gift codes per user): the documented 429.
#
# Every check schemathesis has runs (the default), over three phases: the documents' examples,
# coverage (boundary values, every way to get each parameter wrong, and the methods a path does
# not have, OPTIONS included, with their 405 and ``Allow``) and ``EXAMPLES`` random cases per
# operation, valid and invalid. Stateful runs are left out to keep the suite's time modest.
EXAMPLES = 10
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]
            }
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
        "generation": {"mode": "all", "max-examples": EXAMPLES},
    }
)
PHASES = [HypothesisTestMode.EXAMPLES, HypothesisTestMode.COVERAGE, HypothesisTestMode.FUZZING]


def role_of(case: schemathesis.Case[Any]) -> str:
    """A user's, an admin's or a service's token, spread over the cases but the same for the
    same case in every run (the generation is deterministic, so a failure repeats)."""
    drawn = repr((case.method, case.path_parameters, case.query, case.headers, case.body))
    return sorted(TOKENS)[zlib.crc32(drawn.encode()) % len(TOKENS)]


def operation_test(operation: APIOperation[Any, Any, Any, Any]) -> Callable[[], None]:
    """The cases of every phase of one operation as one hypothesis test (the way schemathesis's
    own pytest integration builds it); calling it raises the first failure, shrunk."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKENS[role_of(case)]}"})

    test: Callable[[], None] = create_test(
        operation=operation,
        test_func=run,
        config=HypothesisTestConfig(project=operation.schema.config, modes=PHASES),
    )
    return test


def test_every_operation_answers_as_documented(api: schemathesis.BaseSchema) -> None:
    failures = []
    operations = 0
    for result in api.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"--- the document: {result.err()}")
            continue
        operation = result.ok()
        operations += 1
        try:
            operation_test(operation)()
        except (Exception, FailureGroup) as exc:  # FailureGroup is not an Exception
            failures.append(f"--- {operation.label}\n{exc}")
    assert operations > 0
    assert not failures, "\n".join(failures)
