"""OpenTelemetry traces, on only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

One purchase is one trace across processes: HTTP requests in (FastAPI) and out (httpx) carry the
W3C ``traceparent`` header, SQL statements are spans of whatever operation runs them, and events
carry the context through the broker. Events leave through the outbox, later and from another
connection (often another process), so the context is captured when the outbox row is written
(:func:`current_carrier`, stored in ``outbox.trace_context``), put into the message headers by the
relay (:func:`publishing`) and restored by the consumer around its handler (:func:`consuming`).

Off, this module costs nothing: OpenTelemetry is imported only by :func:`configure` when the
endpoint is set, no exporter exists, and every helper returns at its first line.

The standard variables apply: ``OTEL_SERVICE_NAME`` (default: the process's name, such as
``billing-worker``), ``OTEL_EXPORTER_OTLP_ENDPOINT`` (``/v1/traces`` is appended),
``OTEL_BSP_SCHEDULE_DELAY`` (ms between exports), ``OTEL_TRACES_SAMPLER`` and so on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer
    from sqlalchemy.ext.asyncio import AsyncEngine

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
# Operations polled all the time; a trace of each would bury the ones that matter.
EXCLUDED_URLS = "health/live,health/ready,metrics"

_process_name: str | None = None
_providers: list[TracerProvider] = []
_tracer: Tracer | None = None


def enabled() -> bool:
    """Whether this process is configured to export traces."""
    return bool(os.environ.get(ENDPOINT_VARIABLE))


def name_process(name: str) -> None:
    """The default service name of this process's spans (the command line sets it)."""
    global _process_name
    _process_name = name


def configure(service: str) -> bool:
    """Set the process's tracer provider up, once; does nothing when the endpoint is unset.

    SQL statements get a provider of their own that records them only inside a trace (a
    ``ParentBased`` sampler whose root is off): the relay's and the schedulers' polling would
    otherwise export a one-span trace every second. Both providers share one exporter.
    """
    global _tracer
    if _tracer is not None or not enabled():
        return _tracer is not None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    name = os.environ.get("OTEL_SERVICE_NAME") or _process_name or service
    resource = Resource.create({SERVICE_NAME: name})
    processor = BatchSpanProcessor(OTLPSpanExporter())
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    sql_provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_OFF))
    sql_provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _providers[:] = [provider, sql_provider]
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _tracer = provider.get_tracer("cinema")
    return True


def flush() -> None:
    """Export the spans still waiting (when a process's work ends).

    The providers stay set up: a process configures them once (a second
    ``set_tracer_provider`` is refused), and the SDK shuts them down at exit.
    """
    if _tracer is None:
        return
    _providers[0].force_flush()


def instrument_app(app: Any) -> None:
    """Trace every request of a FastAPI app (health and metrics left out)."""
    if not enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # ``exclude_spans``: no span per ASGI message sent or received, one per request.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"]
    )


def instrument_engine(engine: AsyncEngine) -> None:
    """Trace the SQL statements of ``engine`` (inside traces only, see :func:`configure`)."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    # ``SQLAlchemyInstrumentor().instrument(engine=...)`` works once per process, and a process
    # opens several engines: each gets the engine tracer that call would have given it.
    tracer = _providers[1].get_tracer("opentelemetry.instrumentation.sqlalchemy")
    usage = get_meter("opentelemetry.instrumentation.sqlalchemy").create_up_down_counter(
        "db.client.connections.usage"
    )
    EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]


def current_carrier() -> str | None:
    """The active trace context as stored with an outbox row (W3C headers as JSON), if any."""
    if _tracer is None:
        return None
    from opentelemetry import propagate, trace

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return orjson.dumps(carrier).decode() if carrier else None


def current_trace_id() -> str | None:
    """The active span's trace id in hex (for log lines), if a span is active."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def _headers(stored: str | None) -> dict[str, Any]:
    if not stored:
        return {}
    value = orjson.loads(stored)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@contextlib.contextmanager
def publishing(
    messages: Sequence[tuple[str, str, str | None]], *, destination: str
) -> Iterator[list[dict[str, Any]]]:
    """The headers to publish ``(event_type, message_id, stored context)`` messages with.

    Traced, each message gets a producer span, child of the context its row stored, ended when
    the block ends (after the broker's confirm); untraced, the stored context is passed on as it
    is, so a consumer that traces still joins the trace of the change that caused the event.
    """
    if _tracer is None:
        yield [_headers(stored) for _, _, stored in messages]
        return
    from opentelemetry import propagate, trace

    spans: list[Span] = []
    headers: list[dict[str, Any]] = []
    for event_type, message_id, stored in messages:
        span = _tracer.start_span(
            f"{event_type} publish",
            context=propagate.extract(_headers(stored)),
            kind=trace.SpanKind.PRODUCER,
            attributes=_messaging_attributes(event_type, message_id, destination, "publish"),
        )
        carrier: dict[str, Any] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        spans.append(span)
        headers.append(carrier)
    try:
        yield headers
    finally:
        for span in spans:
            span.end()


@contextlib.contextmanager
def consuming(
    headers: Mapping[str, Any] | None, *, event_type: str, message_id: str, consumer: str
) -> Iterator[None]:
    """Handle one event inside a consumer span, child of the context its message carries."""
    if _tracer is None:
        yield
        return
    from opentelemetry import propagate, trace

    carrier = {str(k): str(v) for k, v in (headers or {}).items() if isinstance(v, str)}
    with _tracer.start_as_current_span(
        f"{event_type} process",
        context=propagate.extract(carrier),
        kind=trace.SpanKind.CONSUMER,
        attributes=_messaging_attributes(event_type, message_id, consumer, "process"),
    ):
        yield


@contextlib.contextmanager
def consuming_many(
    carriers: Sequence[Mapping[str, Any] | None], *, name: str, consumer: str
) -> Iterator[None]:
    """Handle events together inside one consumer span linked to each message's context (a
    span has one parent; a batch handler, or a whole batch, serves many traces at once)."""
    if _tracer is None:
        yield
        return
    from opentelemetry import propagate, trace

    links = []
    for headers in carriers:
        carrier = {str(k): str(v) for k, v in (headers or {}).items() if isinstance(v, str)}
        context = trace.get_current_span(propagate.extract(carrier)).get_span_context()
        if context.is_valid:
            links.append(trace.Link(context))
    with _tracer.start_as_current_span(
        name,
        kind=trace.SpanKind.CONSUMER,
        links=links,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": consumer,
            "messaging.batch.message_count": len(carriers),
        },
    ):
        yield


def _messaging_attributes(
    event_type: str, message_id: str, destination: str, operation: str
) -> dict[str, str]:
    return {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": operation,
        "messaging.destination.name": destination,
        "messaging.rabbitmq.destination.routing_key": event_type,
        "messaging.message.id": message_id,
    }


@contextlib.contextmanager
def continuing(stored: str | None, name: str) -> Iterator[None]:
    """Run the block in a span of the trace ``stored`` (:func:`current_carrier`) names, for work
    done later on behalf of an earlier request; inside a span already, it is that span's child."""
    if _tracer is None:
        yield
        return
    from opentelemetry import propagate, trace

    context = None
    if not trace.get_current_span().get_span_context().is_valid:
        context = propagate.extract(_headers(stored))
    with _tracer.start_as_current_span(name, context=context):
        yield
