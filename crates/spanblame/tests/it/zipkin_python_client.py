"""Exports a small trace with the OpenTelemetry Python SDK's Zipkin JSON exporter.

Run by `tests/it/clients.rs` with the virtualenv `cargo xtask test` installs.
Usage: zipkin_python_client.py ENDPOINT_URL
Prints one JSON line: {"trace_id": ..., "parent_span_id": ..., "child_span_id": ...}.
"""
import json
import sys

from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

endpoint = sys.argv[1]
resource = Resource.create({
    "service.name": "cart-zipkin",
    "service.version": "3.1.0",
    "deployment.environment.name": "prod",
    "vcs.ref.head.revision": "89abcdef0123456789abcdef0123456789abcdef",
})
provider = TracerProvider(resource=resource)
provider.add_span_processor(SimpleSpanProcessor(ZipkinExporter(endpoint=endpoint)))
tracer = provider.get_tracer("it.zipkin", "0.2.0")

with tracer.start_as_current_span(
    "GET /cart/{id}",
    kind=SpanKind.SERVER,
    attributes={"http.route": "/cart/{id}", "http.response.status_code": 503},
) as parent:
    parent.add_event("cache miss")
    with tracer.start_as_current_span("SELECT carts", kind=SpanKind.CLIENT) as child:
        pass
    parent.set_status(Status(StatusCode.ERROR, "upstream failed"))

provider.force_flush()
print(json.dumps({
    "trace_id": format(parent.get_span_context().trace_id, "032x"),
    "parent_span_id": format(parent.get_span_context().span_id, "016x"),
    "child_span_id": format(child.get_span_context().span_id, "016x"),
}))
