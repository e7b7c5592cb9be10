"""protocol="grpc": the same encoded requests over OTLP/gRPC, received by a real grpcio server that decodes them."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import pytest

grpc = pytest.importorskip("grpc", reason="the grpc extra (pip install 'obsbox[grpc]') is not installed")

from opentelemetry import trace  # noqa: E402
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (  # noqa: E402
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

import obsbox  # noqa: E402

SERVICES: dict[str, tuple[type[Any], type[Any]]] = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export": (ExportTraceServiceRequest,
                                                                     ExportTraceServiceResponse),
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": (ExportMetricsServiceRequest,
                                                                         ExportMetricsServiceResponse),
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export": (ExportLogsServiceRequest,
                                                                   ExportLogsServiceResponse),
}


class Collector:
    """An OTLP/gRPC receiver: decodes each Export call with opentelemetry-proto."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any, dict[str, str]]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((self._Handler(self),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
        def __init__(self, collector: Collector) -> None:
            self.collector = collector

        def service(self, details: Any) -> Any:
            types = SERVICES.get(details.method)
            if types is None:
                return None
            request_type, response_type = types
            metadata = dict(details.invocation_metadata)

            def export(request: Any, context: Any) -> Any:
                self.collector.requests.append((details.method.split(".")[-1], request, metadata))
                return response_type()

            return grpc.unary_unary_rpc_method_handler(
                export, request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString,
            )


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    c.server.start()
    yield c
    c.server.stop(grace=None)


def test_grpc_export_of_spans_metrics_and_logs(collector: Collector) -> None:
    t = obsbox.configure(service_name="over-grpc", endpoint=f"http://127.0.0.1:{collector.port}", protocol="grpc",
                         headers={"x-api-key": "k1"}, console=False, schedule_delay=0.05)
    try:
        with trace.get_tracer("t").start_as_current_span("grpc span") as span:
            obsbox.logger.info("grpc log")
        assert t.force_flush()
    finally:
        t.shutdown()
    by_kind: dict[str, list[Any]] = {}
    for method, request, metadata in collector.requests:
        by_kind.setdefault(method.split("/")[0], []).append(request)
        assert metadata.get("x-api-key") == "k1"
    (traces,) = by_kind["TraceService"][:1]
    exported = traces.resource_spans[0].scope_spans[0].spans[0]
    assert exported.name == "grpc span" and exported.trace_id == span.get_span_context().trace_id.to_bytes(16, "big")
    logs = [r for req in by_kind["LogsService"] for rl in req.resource_logs for sl in rl.scope_logs
            for r in sl.log_records]
    assert [r.body.string_value for r in logs] == ["grpc log"] and logs[0].trace_id == exported.trace_id
    names = {m.name for req in by_kind["MetricsService"] for rm in req.resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics}
    assert "obsbox.export.items" in names
