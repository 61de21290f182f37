"""The gateway's provider settings: which provider takes new payments, the routes by currency,
YooKassa's allow-list, and what production refuses for YooKassa's secret."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from payment_gateway.config import (
    YOOKASSA_NOTIFICATION_NETWORKS,
    GatewaySettings,
    parse_networks,
    parse_routes,
)
from payment_gateway.providers.registry import Providers, UnknownProvider

STRONG_KEY = "live_" + "k" * 43


@pytest.fixture(autouse=True)
def no_gateway_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """These settings are built from arguments only (the shell's GATEWAY_* never leak in)."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_") or name.upper() == "FORWARDED_ALLOW_IPS":
            monkeypatch.delenv(name)


class TestDefaultProvider:
    @pytest.mark.parametrize(
        ("settings", "expected"),
        [
            ({}, "sandbox"),
            ({"stripe_api_key": "sk_test_x"}, "stripe"),
            ({"yookassa_shop_id": "506751", "yookassa_secret_key": "test_x"}, "yookassa"),
            ({"stripe_api_key": "sk_test_x", "yookassa_shop_id": "506751"}, "stripe"),
            ({"provider": "sandbox", "stripe_api_key": "sk_test_x"}, "sandbox"),
            ({"provider": "yookassa"}, "yookassa"),
        ],
        ids=["nothing", "stripe-key", "yookassa-shop", "both", "explicit", "explicit-yookassa"],
    )
    def test_the_provider_of_new_payments_is_as_before_unless_yookassa_is_all_there_is(
        self, settings: dict[str, str], expected: str
    ) -> None:
        assert GatewaySettings(**settings).default_provider == expected  # type: ignore[arg-type]

    def test_make_run_without_keys_serves_the_sandbox_in_development(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CINEMA_ENV", "development")

        settings = GatewaySettings()

        assert (settings.default_provider, settings.sandbox_on) == ("sandbox", True)


class TestRoutes:
    def test_routes_name_a_provider_per_currency_and_a_fallback(self) -> None:
        assert parse_routes(" rub = YooKassa , *=stripe ") == {"RUB": "yookassa", "*": "stripe"}
        assert parse_routes("") == {}

    @pytest.mark.parametrize("routes", ["RUB=paypal", "RUB", "ROUBLE=yookassa", "=stripe"], ids=str)
    def test_a_route_that_cannot_be_served_refuses_to_start(self, routes: str) -> None:
        with pytest.raises(ValidationError):
            GatewaySettings(provider_routes=routes)

    def test_a_checkout_goes_where_its_currency_is_routed(self) -> None:
        yookassa, stripe, sandbox = _Named("yookassa"), _Named("stripe"), _Named("sandbox")
        providers = Providers(
            default="sandbox",
            by_name={"yookassa": yookassa, "stripe": stripe, "sandbox": sandbox},  # type: ignore[dict-item]
            routes={"RUB": "yookassa", "*": "stripe"},
        )

        assert providers.for_currency("RUB").name == yookassa.name
        assert providers.for_currency("EUR").name == stripe.name
        assert providers.for_new_payments.name == sandbox.name

    def test_without_a_fallback_other_currencies_go_to_the_default(self) -> None:
        providers = Providers(
            default="stripe",
            by_name={"yookassa": _Named("yookassa"), "stripe": _Named("stripe")},  # type: ignore[dict-item]
            routes={"RUB": "yookassa"},
        )

        assert providers.for_currency("USD").name == "stripe"

    def test_a_route_to_a_provider_not_served_is_an_error_not_a_silent_fallback(self) -> None:
        providers = Providers(default="sandbox", routes={"RUB": "yookassa"})

        with pytest.raises(UnknownProvider):
            providers.for_currency("RUB")


class TestAllowList:
    def test_the_default_is_yookassas_published_ranges(self) -> None:
        networks = parse_networks(GatewaySettings().yookassa_allowed_ips)

        assert networks == parse_networks(YOOKASSA_NOTIFICATION_NETWORKS)
        assert ipaddress.ip_address("77.75.156.11") in networks[3]
        assert str(networks[-1]) == "2a02:5180::/32"

    def test_a_typo_in_the_allow_list_refuses_to_start(self) -> None:
        with pytest.raises(ValidationError):
            GatewaySettings(yookassa_allowed_ips="185.71.76.0/27, 185.71.777.0/27")


class TestProductionProblems:
    def test_yookassa_needs_a_shop_id_and_a_strong_secret_key(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("GATEWAY_YOOKASSA_SECRET_KEY", "test_short")

        problems = GatewaySettings(provider="yookassa").production_problems()

        assert [problem.split()[0] for problem in problems] == [
            "GATEWAY_YOOKASSA_SHOP_ID",
            "GATEWAY_YOOKASSA_SECRET_KEY",
        ]
        assert "too short" in problems[1]

    def test_a_configured_shop_with_its_own_key_is_fit_for_production(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("GATEWAY_YOOKASSA_SHOP_ID", "506751")
        monkeypatch.setenv("GATEWAY_YOOKASSA_SECRET_KEY", STRONG_KEY)

        assert GatewaySettings().production_problems() == []

    @pytest.mark.parametrize(
        ("forwarded_allow_ips", "refused"),
        [("*", True), ("10.0.0.0/8, 0.0.0.0/0", True), ("10.0.0.0/8", False), ("127.0.0.1", False)],
    )
    def test_a_shop_behind_proxies_believed_whoever_they_are_is_refused(
        self, monkeypatch: pytest.MonkeyPatch, forwarded_allow_ips: str, refused: bool
    ) -> None:
        """uvicorn (serve.py) takes the client's address from X-Forwarded-For of the peers in
        FORWARDED_ALLOW_IPS; with "*" it takes the header's first address, which the sender
        writes. YooKassa's notifications are believed by that address."""
        monkeypatch.setenv("GATEWAY_YOOKASSA_SHOP_ID", "506751")
        monkeypatch.setenv("GATEWAY_YOOKASSA_SECRET_KEY", STRONG_KEY)
        monkeypatch.setenv("FORWARDED_ALLOW_IPS", forwarded_allow_ips)

        problems = GatewaySettings().production_problems()

        assert [problem.split()[0] for problem in problems] == (
            ["FORWARDED_ALLOW_IPS"] if refused else []
        )

    def test_routing_to_stripe_needs_stripes_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GATEWAY_YOOKASSA_SHOP_ID", "506751")
        monkeypatch.setenv("GATEWAY_YOOKASSA_SECRET_KEY", STRONG_KEY)

        problems = GatewaySettings(provider_routes="RUB=yookassa,*=stripe").production_problems()

        assert [problem.split()[0] for problem in problems] == ["GATEWAY_STRIPE_API_KEY"]


class _Named:
    """A provider known only by its name (the registry never calls it)."""

    def __init__(self, name: str) -> None:
        self.name = name
