"""API clients generated (openapi-python-client) from the services' own OpenAPI documents.

Nothing is checked in: the clients are generated from each running service's ``/openapi.json``
into a directory of generated packages (``billing_client``, ``access_client``…) and imported from
there, so a client can never disagree with the service it talks to; when a route the story uses
changes shape, the story breaks on the generated code, not on a stale copy.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx


class UnexpectedAnswer(Exception):
    """A call answered with a status the story did not expect."""


def generator() -> str:
    return str(Path(sys.executable).with_name("openapi-python-client"))


def generate(service: str, spec: dict[str, Any], into: Path) -> str:
    """Generate ``<service>_client`` into ``into`` from ``spec``; the package's name."""
    package = f"{service}_client"
    into.mkdir(parents=True, exist_ok=True)
    spec_file = into / f"{service}.openapi.json"
    spec_file.write_text(json.dumps(spec))
    done = subprocess.run(
        [
            generator(),
            "generate",
            "--path",
            str(spec_file),
            "--meta",
            "none",
            "--output-path",
            str(into / package),
            "--overwrite",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"generating the {service} client failed:\n{done.stdout}{done.stderr}")
    return package


def generate_from_live(urls: dict[str, str], into: Path) -> None:
    """Generate a client for each running service (``name -> base URL``) and make it importable."""
    for service, url in urls.items():
        response = httpx.get(f"{url}/openapi.json", timeout=10)
        response.raise_for_status()
        generate(service, response.json(), into)
    if str(into) not in sys.path:
        sys.path.insert(0, str(into))
    importlib.invalidate_caches()


class Api:
    """One service through its generated client: ``await api.call("catalog.list_plans")``."""

    def __init__(self, service: str, base_url: str, token: str | None = None) -> None:
        self.package = f"{service}_client"
        client_module = importlib.import_module(f"{self.package}.client")
        if token is None:
            self.client = client_module.Client(base_url=base_url, raise_on_unexpected_status=True)
        else:
            self.client = client_module.AuthenticatedClient(
                base_url=base_url, token=token, raise_on_unexpected_status=True
            )

    def model(self, name: str) -> Any:
        """A generated model class, e.g. ``SubscriptionIn``."""
        return getattr(importlib.import_module(f"{self.package}.models"), name)

    async def call(self, operation: str, *args: Any, expect: int = 200, **kwargs: Any) -> Any:
        """Call ``<tag>.<operation id>``; the parsed body when the status is ``expect``."""
        module = importlib.import_module(f"{self.package}.api.{operation}")
        response = await module.asyncio_detailed(*args, client=self.client, **kwargs)
        if response.status_code != expect:
            raise UnexpectedAnswer(
                f"{operation}: {int(response.status_code)} (expected {expect}):"
                f" {response.content.decode(errors='replace')[:500]}"
            )
        return response.parsed


def main() -> None:
    """``make clients``: generate every client from the running suite into ``clients/``."""
    urls = {
        service: f"http://127.0.0.1:{port}"
        for service, port in (
            ("billing", 8000),
            ("gateway", 8001),
            ("access", 8002),
            ("notifier", 8003),
        )
    }
    into = Path(sys.argv[1] if len(sys.argv) > 1 else "clients")
    generate_from_live(urls, into)
    print(f"generated {', '.join(f'{s}_client' for s in urls)} into {into}/")


if __name__ == "__main__":
    main()
