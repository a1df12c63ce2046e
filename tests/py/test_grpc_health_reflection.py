"""The standard gRPC health and reflection services, with stock grpcio clients and no API key."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from conftest import RPC_TIMEOUT, SERVICE


@pytest.mark.parametrize("service", ["", SERVICE])
def test_health_serving_without_key(channel, service):
    resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                     timeout=RPC_TIMEOUT)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_health_unknown_service_is_not_found(channel):
    with pytest.raises(grpc.RpcError) as info:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="no.such.Service"),
                                                  timeout=RPC_TIMEOUT)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_sessions_service(channel):
    db = ProtoReflectionDescriptorDatabase(channel)
    services = list(db.get_services())
    assert SERVICE in services


def test_reflection_describes_the_health_service(channel):
    """grpcurl and buf curl call health with no proto file: reflection must list and describe it."""
    db = ProtoReflectionDescriptorDatabase(channel)
    assert "grpc.health.v1.Health" in list(db.get_services())
    pool = descriptor_pool.DescriptorPool(db)
    method = pool.FindMethodByName("grpc.health.v1.Health.Check")
    assert method.input_type.full_name == "grpc.health.v1.HealthCheckRequest"
    assert method.output_type.fields_by_name["status"].enum_type.values_by_name["SERVING"].number == 1


def test_reflection_describes_list_sessions_v2(channel):
    db = ProtoReflectionDescriptorDatabase(channel)
    file_proto = db.FindFileContainingSymbol(SERVICE)
    assert file_proto.package == "core.v1"
    service = next(s for s in file_proto.service if s.name == "SessionsService")
    methods = {m.name: m for m in service.method}
    assert {"GetSession", "ListSessionsV2", "CreateSessionTermination"} <= set(methods)
    assert methods["ListSessionsV2"].input_type == ".core.v1.ListSessionsV2Request"
    assert methods["ListSessionsV2"].output_type == ".core.v1.ListSessionsV2Response"


def test_reflection_resolves_full_message_schema(channel):
    """A pool backed by reflection alone can resolve the request, its dependencies and field numbers."""
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    method = pool.FindMethodByName(f"{SERVICE}.ListSessionsV2")
    request_fields = {f.name: f.number for f in method.input_type.fields}
    assert request_fields == {"limit": 1, "query": 2, "sort_by": 3, "start_timestamp": 4,
                              "end_timestamp": 5, "cursor": 6}
    response = method.output_type
    assert response.fields_by_name["list_metadata"].message_type.full_name == "core.v1.ListMetadata"
    session = pool.FindMessageTypeByName("core.v1.SessionObject")
    assert session.fields_by_name["start_time"].message_type.full_name == "google.protobuf.Timestamp"
    assert session.fields_by_name["duration"].message_type.full_name == "google.protobuf.Duration"
