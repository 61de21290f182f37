"""Bearer token verification, minting and the FastAPI dependencies of ``shared.auth``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm
from pydantic import SecretStr

from shared.auth import (
    AdminOrServicePrincipal,
    AdminPrincipal,
    AuthSettings,
    CurrentPrincipal,
    OptionalPrincipal,
    Principal,
    ServicePrincipal,
    SigningKeysUnavailable,
    TokenVerifier,
    mint_service_token,
    mint_user_token,
)
from shared.errors import Unauthorized, install_error_handlers

USER_SECRET = "user-tokens-secret-for-tests-32-bytes-or-more"
INTERNAL_SECRET = "internal-tokens-secret-for-tests-32-bytes-or-more"


@pytest.fixture(autouse=True)
def _no_auth_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings in these tests come from arguments only, never from the developer's shell."""
    for name in AuthSettings.model_fields:
        monkeypatch.delenv(f"AUTH_{name.upper()}", raising=False)


def make_settings(**overrides: Any) -> AuthSettings:
    values: dict[str, Any] = {
        "jwt_secret": SecretStr(USER_SECRET),
        "internal_secret": SecretStr(INTERNAL_SECRET),
        **overrides,
    }
    return AuthSettings(**values)


def user_claims(**overrides: Any) -> dict[str, Any]:
    return {"sub": str(uuid4()), "exp": int(time.time()) + 600, **overrides}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_by_hand(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
    """A compact JWT built without pyjwt, which refuses to produce the malicious ones."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if hmac_key is None:
        return f"{signing_input}."
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def pem(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    return public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def rejection(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(token)
    return caught.value.detail


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(make_settings())


class TestVerifyUserToken:
    def test_valid_hs256_token_gives_the_user_principal(self, verifier: TokenVerifier) -> None:
        user_id = uuid4()
        claims = user_claims(sub=str(user_id), email="ann@example.com", roles=["reader"])

        principal = verifier.verify(jwt.encode(claims, USER_SECRET, algorithm="HS256"))

        assert principal == Principal(
            subject=str(user_id),
            user_id=user_id,
            email="ann@example.com",
            roles=frozenset({"reader"}),
        )
        assert not principal.is_admin
        assert not principal.is_service

    def test_token_without_roles_has_no_roles(self, verifier: TokenVerifier) -> None:
        principal = verifier.verify(jwt.encode(user_claims(), USER_SECRET, algorithm="HS256"))

        assert principal.roles == frozenset()
        assert principal.email is None

    def test_expired_token_is_rejected(self, verifier: TokenVerifier) -> None:
        token = jwt.encode(user_claims(exp=int(time.time()) - 60), USER_SECRET, algorithm="HS256")

        assert rejection(verifier, token) == "token expired"

    def test_token_signed_with_another_secret_is_rejected(self, verifier: TokenVerifier) -> None:
        token = jwt.encode(user_claims(), "x" * 32 + "another secret", algorithm="HS256")

        assert rejection(verifier, token) == "bad signature"

    def test_unsigned_alg_none_token_is_rejected(self, verifier: TokenVerifier) -> None:
        token = token_by_hand({"alg": "none", "typ": "JWT"}, user_claims(), hmac_key=None)

        assert rejection(verifier, token) == "algorithm not allowed"

    def test_token_without_exp_is_rejected(self, verifier: TokenVerifier) -> None:
        token = jwt.encode({"sub": str(uuid4())}, USER_SECRET, algorithm="HS256")

        assert rejection(verifier, token) == "missing exp"

    def test_token_without_sub_is_rejected(self, verifier: TokenVerifier) -> None:
        token = jwt.encode({"exp": int(time.time()) + 60}, USER_SECRET, algorithm="HS256")

        assert rejection(verifier, token) == "missing sub"

    def test_user_token_whose_sub_is_not_a_uuid_is_rejected(self, verifier: TokenVerifier) -> None:
        token = jwt.encode(user_claims(sub="ann"), USER_SECRET, algorithm="HS256")

        assert rejection(verifier, token) == "sub is not a user id"

    def test_admin_token_whose_sub_is_not_a_uuid_is_accepted(self, verifier: TokenVerifier) -> None:
        token = jwt.encode(user_claims(sub="ops", roles=["admin"]), USER_SECRET, algorithm="HS256")

        principal = verifier.verify(token)

        assert principal.subject == "ops"
        assert principal.user_id is None
        assert principal.is_admin

    def test_roles_that_are_not_a_list_of_strings_are_rejected(
        self, verifier: TokenVerifier
    ) -> None:
        token = jwt.encode(user_claims(roles="admin"), USER_SECRET, algorithm="HS256")

        assert rejection(verifier, token) == "malformed roles claim"

    def test_garbage_is_rejected_as_malformed(self, verifier: TokenVerifier) -> None:
        assert rejection(verifier, "not-a-jwt") == "malformed token"

    def test_email_longer_than_any_address_is_rejected(self, verifier: TokenVerifier) -> None:
        email = "a" * 4988 + "@example.com"  # 5,000 characters: no column here keeps it
        token = jwt.encode(user_claims(email=email), USER_SECRET, algorithm="HS256")

        assert rejection(verifier, token).startswith("malformed email claim")

    def test_email_of_320_characters_is_accepted(self, verifier: TokenVerifier) -> None:
        email = "a" * 64 + "@" + "b" * 251 + ".com"
        token = jwt.encode(user_claims(email=email), USER_SECRET, algorithm="HS256")

        assert verifier.verify(token).email == email

    def test_email_with_a_nul_character_is_rejected(self, verifier: TokenVerifier) -> None:
        token = jwt.encode(user_claims(email="ann\x00@example.com"), USER_SECRET, algorithm="HS256")

        assert rejection(verifier, token).startswith("malformed email claim")

    def test_admin_sub_longer_than_255_characters_is_rejected(
        self, verifier: TokenVerifier
    ) -> None:
        token = jwt.encode(
            user_claims(sub="o" * 256, roles=["admin"]), USER_SECRET, algorithm="HS256"
        )

        assert rejection(verifier, token).startswith("malformed sub")


class TestRememberedTokens:
    def test_a_remembered_token_is_refused_once_it_expires(self) -> None:
        settings = make_settings(leeway_seconds=0)
        verifier = TokenVerifier(settings)
        token = mint_user_token(settings, uuid4(), ttl_seconds=1)
        assert verifier.verify(token).user_id is not None
        time.sleep(1.1)
        with pytest.raises(Unauthorized, match="expired"):
            verifier.verify(token)

    def test_a_remembered_token_is_served_without_decoding_again(self) -> None:
        settings = make_settings()
        verifier = TokenVerifier(settings)
        token = mint_user_token(settings, uuid4())
        first = verifier.verify(token)
        assert verifier.verify(token) is first


class TestVerifyIssuerAndAudience:
    def test_matching_issuer_and_audience_are_accepted(self) -> None:
        verifier = TokenVerifier(make_settings(issuer="https://auth.cinema", audience="billing"))
        claims = user_claims(iss="https://auth.cinema", aud="billing")

        principal = verifier.verify(jwt.encode(claims, USER_SECRET, algorithm="HS256"))

        assert principal.subject == claims["sub"]

    def test_wrong_audience_is_rejected(self) -> None:
        verifier = TokenVerifier(make_settings(audience="billing"))
        token = jwt.encode(user_claims(aud="notifier"), USER_SECRET, algorithm="HS256")

        assert rejection(verifier, token) == "wrong audience"

    def test_missing_audience_is_rejected_when_configured(self) -> None:
        verifier = TokenVerifier(make_settings(audience="billing"))
        token = jwt.encode(user_claims(), USER_SECRET, algorithm="HS256")

        assert rejection(verifier, token) == "missing aud"

    def test_wrong_issuer_is_rejected(self) -> None:
        verifier = TokenVerifier(make_settings(issuer="https://auth.cinema"))
        token = jwt.encode(user_claims(iss="https://evil.example"), USER_SECRET, algorithm="HS256")

        assert rejection(verifier, token) == "wrong issuer"

    def test_token_without_aud_is_accepted_when_audience_is_not_configured(
        self, verifier: TokenVerifier
    ) -> None:
        token = jwt.encode(user_claims(), USER_SECRET, algorithm="HS256")

        assert verifier.verify(token).user_id is not None

    def test_any_aud_is_accepted_when_audience_is_not_configured(
        self, verifier: TokenVerifier
    ) -> None:
        token = jwt.encode(user_claims(aud="whatever"), USER_SECRET, algorithm="HS256")

        assert verifier.verify(token).user_id is not None


class TestVerifyWithPublicKey:
    def test_rs256_token_signed_by_the_auth_service_is_accepted(
        self, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        verifier = TokenVerifier(
            make_settings(jwt_algorithm="RS256", jwt_public_key=pem(rsa_key.public_key()))
        )
        claims = user_claims(roles=["admin"])

        principal = verifier.verify(jwt.encode(claims, rsa_key, algorithm="RS256"))

        assert principal.user_id == UUID(claims["sub"])
        assert principal.is_admin

    def test_pem_with_escaped_newlines_from_an_env_file_is_accepted(
        self, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        one_line_pem = pem(rsa_key.public_key()).replace("\n", "\\n")
        verifier = TokenVerifier(make_settings(jwt_algorithm="RS256", jwt_public_key=one_line_pem))

        principal = verifier.verify(jwt.encode(user_claims(), rsa_key, algorithm="RS256"))

        assert principal.user_id is not None

    def test_hs256_token_keyed_with_the_rsa_public_key_is_rejected(
        self, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        public_pem = pem(rsa_key.public_key())
        verifier = TokenVerifier(make_settings(jwt_algorithm="RS256", jwt_public_key=public_pem))
        forged = token_by_hand(
            {"alg": "HS256", "typ": "JWT"},
            user_claims(roles=["admin"]),
            hmac_key=public_pem.encode(),
        )

        assert rejection(verifier, forged) == "algorithm not allowed"

    def test_hs256_token_with_the_user_secret_is_rejected_when_rs256_is_configured(
        self, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        verifier = TokenVerifier(
            make_settings(jwt_algorithm="RS256", jwt_public_key=pem(rsa_key.public_key()))
        )
        token = jwt.encode(user_claims(), USER_SECRET, algorithm="HS256")

        assert rejection(verifier, token) == "algorithm not allowed"

    def test_asymmetric_algorithm_without_a_key_source_is_a_configuration_error(self) -> None:
        with pytest.raises(ValueError, match="needs exactly one of"):
            make_settings(jwt_algorithm="ES256")


@dataclass
class JwksServer:
    url: str
    requests: int = 0
    delay_seconds: float = 0.0


@pytest.fixture
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def jwks_server(ec_key: ec.EllipticCurvePrivateKey) -> Iterator[JwksServer]:
    """A real HTTP server on a free local port publishing ``ec_key`` as kid ``key-1``."""
    jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    body = json.dumps({"keys": [{**jwk, "kid": "key-1", "alg": "ES256", "use": "sig"}]}).encode()
    server_state = JwksServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server_state.requests += 1
            time.sleep(server_state.delay_seconds)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    server_state.url = f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    yield server_state
    server.shutdown()
    server.server_close()
    thread.join()


def es256_token(key: ec.EllipticCurvePrivateKey, kid: str = "key-1", **claims: Any) -> str:
    return jwt.encode(user_claims(**claims), key, algorithm="ES256", headers={"kid": kid})


class TestVerifyWithJwks:
    def test_es256_token_signed_by_a_published_key_is_accepted(
        self, jwks_server: JwksServer, ec_key: ec.EllipticCurvePrivateKey
    ) -> None:
        verifier = TokenVerifier(make_settings(jwt_algorithm="ES256", jwks_url=jwks_server.url))

        principal = verifier.verify(es256_token(ec_key, email="bob@example.com"))

        assert principal.email == "bob@example.com"
        assert principal.user_id is not None

    def test_token_signed_by_another_key_is_rejected(self, jwks_server: JwksServer) -> None:
        verifier = TokenVerifier(make_settings(jwt_algorithm="ES256", jwks_url=jwks_server.url))
        intruder = ec.generate_private_key(ec.SECP256R1())

        assert rejection(verifier, es256_token(intruder)) == "bad signature"

    def test_token_with_an_unpublished_kid_is_rejected(
        self, jwks_server: JwksServer, ec_key: ec.EllipticCurvePrivateKey
    ) -> None:
        verifier = TokenVerifier(make_settings(jwt_algorithm="ES256", jwks_url=jwks_server.url))
        verifier.verify(es256_token(ec_key))

        assert rejection(verifier, es256_token(ec_key, kid="key-2")) == "unknown signing key"

    def test_key_set_is_fetched_once_for_many_tokens(
        self, jwks_server: JwksServer, ec_key: ec.EllipticCurvePrivateKey
    ) -> None:
        verifier = TokenVerifier(make_settings(jwt_algorithm="ES256", jwks_url=jwks_server.url))

        for _ in range(5):
            verifier.verify(es256_token(ec_key))

        assert jwks_server.requests == 1

    async def test_async_verification_fetches_the_key_set_and_accepts_the_token(
        self, jwks_server: JwksServer, ec_key: ec.EllipticCurvePrivateKey
    ) -> None:
        verifier = TokenVerifier(make_settings(jwt_algorithm="ES256", jwks_url=jwks_server.url))

        first = await verifier.verify_async(es256_token(ec_key))
        second = await verifier.verify_async(es256_token(ec_key))

        assert first.user_id is not None
        assert second.user_id is not None
        assert jwks_server.requests == 1

    async def test_slow_key_server_does_not_stall_the_event_loop(
        self, jwks_server: JwksServer, ec_key: ec.EllipticCurvePrivateKey
    ) -> None:
        verifier = TokenVerifier(make_settings(jwt_algorithm="ES256", jwks_url=jwks_server.url))
        jwks_server.delay_seconds = 0.3
        ticks = 0

        async def tick_while_verifying() -> None:
            nonlocal ticks
            while jwks_server.requests == 0 or not verified.done():
                ticks += 1
                await asyncio.sleep(0.01)

        verified = asyncio.ensure_future(verifier.verify_async(es256_token(ec_key)))
        await asyncio.gather(verified, tick_while_verifying())

        assert verified.result().user_id is not None
        assert ticks >= 10

    def test_unreachable_key_set_is_a_503_not_the_callers_fault(
        self, ec_key: ec.EllipticCurvePrivateKey
    ) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        url = f"http://127.0.0.1:{closed_port}/jwks.json"
        verifier = TokenVerifier(make_settings(jwt_algorithm="ES256", jwks_url=url))

        with pytest.raises(SigningKeysUnavailable) as caught:
            verifier.verify(es256_token(ec_key))

        assert caught.value.status_code == 503


class TestVerifyInternalToken:
    def test_service_token_gives_a_service_principal(self, verifier: TokenVerifier) -> None:
        token = mint_service_token(make_settings(), "billing-api")

        principal = verifier.verify(token)

        assert principal == Principal(
            subject="billing-api",
            user_id=None,
            email=None,
            roles=frozenset({"service"}),
            internal=True,
        )
        assert principal.is_service
        assert principal.is_internal_service

    def test_auth_service_token_with_the_service_role_is_not_internal(
        self, verifier: TokenVerifier
    ) -> None:
        token = jwt.encode(
            user_claims(sub="partner", roles=["service"]), USER_SECRET, algorithm="HS256"
        )

        principal = verifier.verify(token)

        assert principal.is_service
        assert not principal.is_internal_service

    def test_service_token_is_accepted_when_user_tokens_are_rs256(
        self, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        settings = make_settings(jwt_algorithm="RS256", jwt_public_key=pem(rsa_key.public_key()))

        principal = TokenVerifier(settings).verify(mint_service_token(settings, "notifier"))

        assert principal.is_service

    def test_internal_looking_token_signed_with_the_user_secret_is_rejected(
        self, verifier: TokenVerifier
    ) -> None:
        forged = mint_service_token(
            make_settings(internal_secret=SecretStr(USER_SECRET)), "billing-api"
        )

        assert rejection(verifier, forged) == "bad signature"

    def test_expired_service_token_is_rejected(self, verifier: TokenVerifier) -> None:
        token = mint_service_token(make_settings(), "billing-api", ttl_seconds=-60)

        assert rejection(verifier, token) == "token expired"

    def test_internal_token_without_the_service_role_is_rejected(
        self, verifier: TokenVerifier
    ) -> None:
        claims = user_claims(iss="cinema-internal", aud="cinema-internal", roles=["admin"])
        token = jwt.encode(claims, INTERNAL_SECRET, algorithm="HS256")

        assert rejection(verifier, token) == "internal token without the service role"

    def test_internal_token_for_another_audience_is_rejected(self, verifier: TokenVerifier) -> None:
        claims = user_claims(iss="cinema-internal", aud="elsewhere", roles=["service"])
        token = jwt.encode(claims, INTERNAL_SECRET, algorithm="HS256")

        assert rejection(verifier, token) == "wrong audience"


class TestMintUserToken:
    def test_token_carries_issuer_and_audience_when_configured(self) -> None:
        settings = make_settings(issuer="https://auth.cinema", audience="billing")
        user_id = uuid4()

        token = mint_user_token(settings, user_id, email="ann@example.com", roles=["admin"])

        claims = jwt.decode(token, options={"verify_signature": False})
        assert (claims["iss"], claims["aud"]) == ("https://auth.cinema", "billing")
        assert TokenVerifier(settings).verify(token).user_id == user_id

    def test_ttl_sets_the_expiry(self) -> None:
        token = mint_user_token(make_settings(), uuid4(), ttl_seconds=120)

        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 120

    def test_minting_is_refused_when_tokens_are_rs256(self, rsa_key: rsa.RSAPrivateKey) -> None:
        settings = make_settings(jwt_algorithm="RS256", jwt_public_key=pem(rsa_key.public_key()))

        with pytest.raises(ValueError, match="private key"):
            mint_user_token(settings, uuid4())


class TestCanActFor:
    @pytest.mark.parametrize(
        ("roles", "own_data", "allowed"),
        [
            (frozenset[str](), True, True),
            (frozenset[str](), False, False),
            (frozenset({"admin"}), False, True),
            (frozenset({"service"}), False, True),
        ],
        ids=["same-user", "other-user", "admin", "service"],
    )
    def test_only_that_user_an_admin_or_a_service_may_act(
        self, roles: frozenset[str], own_data: bool, allowed: bool
    ) -> None:
        caller_id = uuid4()
        principal = Principal(str(caller_id), caller_id, None, roles)

        assert principal.can_act_for(caller_id if own_data else uuid4()) is allowed


def build_app(settings: AuthSettings) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.token_verifier = TokenVerifier(settings)

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.get("/maybe")
    async def maybe(principal: OptionalPrincipal) -> dict[str, str | None]:
        return {"subject": principal.subject if principal else None}

    @app.get("/admin")
    async def admin(principal: AdminPrincipal) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.get("/service")
    async def service(principal: ServicePrincipal) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.get("/staff")
    async def staff(principal: AdminOrServicePrincipal) -> dict[str, str]:
        return {"subject": principal.subject}

    return app


async def get(path: str, token: str | None = None, *, scheme: str = "Bearer") -> httpx.Response:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    transport = httpx.ASGITransport(app=build_app(make_settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


def user_token(*roles: str) -> str:
    return mint_user_token(make_settings(), uuid4(), roles=roles)


def service_token() -> str:
    return mint_service_token(make_settings(), "billing-api")


class TestGetPrincipal:
    async def test_request_without_a_token_is_401_with_a_bearer_challenge(self) -> None:
        response = await get("/me")

        assert response.status_code == 401
        assert response.json() == {"error": "Unauthorized", "detail": "missing bearer token"}
        assert response.headers["WWW-Authenticate"] == "Bearer"

    async def test_non_bearer_authorization_is_401(self) -> None:
        response = await get("/me", "dXNlcjpwYXNz", scheme="Basic")

        assert response.status_code == 401
        assert response.json()["error"] == "Unauthorized"

    async def test_expired_token_is_401_saying_so(self) -> None:
        expired = mint_user_token(make_settings(), uuid4(), ttl_seconds=-60)

        response = await get("/me", expired)

        assert response.status_code == 401
        assert response.json() == {"error": "Unauthorized", "detail": "token expired"}

    async def test_valid_token_reaches_the_route(self) -> None:
        user_id = uuid4()

        response = await get("/me", mint_user_token(make_settings(), user_id))

        assert response.status_code == 200
        assert response.json() == {"subject": str(user_id)}


class TestGetOptionalPrincipal:
    async def test_request_without_a_token_is_anonymous(self) -> None:
        response = await get("/maybe")

        assert response.status_code == 200
        assert response.json() == {"subject": None}

    async def test_bad_token_is_still_401(self) -> None:
        response = await get("/maybe", "not-a-jwt")

        assert response.status_code == 401
        assert response.json() == {"error": "Unauthorized", "detail": "malformed token"}


class TestRequireAdmin:
    async def test_plain_user_is_403(self) -> None:
        response = await get("/admin", user_token())

        assert response.status_code == 403
        assert response.json() == {"error": "Forbidden", "detail": "admin role required"}

    async def test_admin_is_let_in(self) -> None:
        response = await get("/admin", user_token("admin"))

        assert response.status_code == 200


class TestRequireService:
    async def test_service_is_let_in(self) -> None:
        response = await get("/service", service_token())

        assert response.status_code == 200
        assert response.json() == {"subject": "billing-api"}

    async def test_admin_is_403(self) -> None:
        response = await get("/service", user_token("admin"))

        assert response.status_code == 403
        assert response.json() == {"error": "Forbidden", "detail": "service role required"}


class TestRequireAdminOrService:
    @pytest.mark.parametrize("caller", ["admin", "service"])
    async def test_admin_or_service_is_let_in(self, caller: str) -> None:
        token = user_token("admin") if caller == "admin" else service_token()

        response = await get("/staff", token)

        assert response.status_code == 200

    async def test_plain_user_is_403(self) -> None:
        response = await get("/staff", user_token())

        assert response.status_code == 403
