"""Exports a small trace with the OpenTelemetry Python SDK's OTLP/HTTP exporter.

Run by `tests/it/clients.rs` with the virtualenv `cargo xtask test` installs.
Usage: otel_python_client.py ENDPOINT_URL
Prints one JSON line: {"trace_id": ..., "parent_span_id": ..., "child_span_id": ...}.
"""
import json
import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

endpoint = sys.argv[1]
resource = Resource.create({
    "service.name": "cart-py",
    "service.version": "2.0.1",
    "deployment.environment.name": "staging",
    "vcs.ref.head.revision": "0123456789abcdef0123456789abcdef01234567",
})
provider = TracerProvider(resource=resource)
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
tracer = provider.get_tracer("it.python", "0.1.0")

linked = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(1),
)
with tracer.start_as_current_span(
    "GET /cart/{id}",
    kind=SpanKind.SERVER,
    attributes={"http.route": "/cart/{id}", "http.response.status_code": 500, "cart.ratio": 0.5, "cart.cached": True},
    links=[Link(linked, {"link.reason": "retry-of"})],
) as parent:
    parent.add_event("cache miss", {"cache.key": "cart:42"})
    with tracer.start_as_current_span(
        "SELECT carts", kind=SpanKind.CLIENT,
        attributes={"code.filepath": "cart/store.py", "code.function": "load", "code.namespace": "cart.store", "code.lineno": 17},
    ) as child:
        pass
    parent.set_status(Status(StatusCode.ERROR, "upstream failed"))

provider.force_flush()
print(json.dumps({
    "trace_id": format(parent.get_span_context().trace_id, "032x"),
    "parent_span_id": format(parent.get_span_context().span_id, "016x"),
    "child_span_id": format(child.get_span_context().span_id, "016x"),
}))
provider.shutdown()
