"""Schema fuzzing: every HTTP service answers whatever schemathesis sends the way its OpenAPI says.

Each service's app runs in-process (ASGI) on a scratch database and broker prefix. Cases go out
with a user's, an admin's or a service's token (hypothesis picks one per case), so the checks see
the authorised paths as well as the refusals. The checks: no 5xx, status codes and bodies as
documented, malformed or wrongly typed input refused with a documented 4xx.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode
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
# code that does not exist, more months than the plan allows): the documented 422 says so.
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
            }
        }
    }
)
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
EXAMPLES = 10


def fuzz(operation: APIOperation[Any, Any, Any, Any], mode: GenerationMode) -> None:
    """Run ``EXAMPLES`` cases of one operation; raises the first (shrunk) failure."""

    @given(case=operation.as_strategy(generation_mode=mode), role=st.sampled_from(sorted(TOKENS)))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: schemathesis.Case[Any], role: str) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKENS[role]}"})

    run()


def test_every_operation_answers_as_documented(api: schemathesis.BaseSchema) -> None:
    failures = []
    operations = 0
    for result in api.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"--- the document: {result.err()}")
            continue
        operation = result.ok()
        operations += 1
        for mode in MODES:
            try:
                fuzz(operation, mode)
            except Unsatisfiable:
                continue  # nothing in this operation can be made invalid (no input)
            except Exception as exc:
                failures.append(f"--- {operation.label} ({mode.value})\n{exc}")
    assert operations > 0
    assert not failures, "\n".join(failures)
