"""A standard gRPC client in another language against a Lazaret agent.

Usage: grpc_probe.py ADDRESS PKI_DIR
Lists the services through server reflection, asks grpc.health.v1 whether lazaret.v1.AgentService
is SERVING (with the admin certificate), and checks that a client without a certificate is
refused. Prints one JSON object; exits non-zero on any surprise.
"""

import json
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

TIMEOUT = 10
# The agent's certificate names localhost and the loopback addresses.
OPTIONS = [("grpc.ssl_target_name_override", "localhost")]


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def main():
    address, pki = sys.argv[1], sys.argv[2]
    ca = read(f"{pki}/ca.pem")
    with_cert = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=read(f"{pki}/admin-key.pem"),
        certificate_chain=read(f"{pki}/admin.pem"),
    )
    channel = grpc.secure_channel(address, with_cert, options=OPTIONS)
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
    services = sorted(ProtoReflectionDescriptorDatabase(channel).get_services())
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="lazaret.v1.AgentService"), timeout=TIMEOUT
    )
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)

    without_cert = grpc.secure_channel(
        address, grpc.ssl_channel_credentials(root_certificates=ca), options=OPTIONS
    )
    try:
        health_pb2_grpc.HealthStub(without_cert).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT
        )
        refused = None
    except grpc.RpcError as error:
        refused = error.code().name

    print(json.dumps({"services": services, "health": status, "without_certificate": refused}))
    ok = (
        "lazaret.v1.AgentService" in services
        and "grpc.health.v1.Health" in services
        and status == "SERVING"
        and refused is not None
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
