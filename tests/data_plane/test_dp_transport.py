"""The data plane's transport settings: TLS from a certificate and key file (both or neither), and server
reflection on in development mode, off in production unless asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from dp_helpers import SDK_KEY, Plane, settings_for
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import ValidationError

from flagyard import FlagyardClient
from flagyard.data_plane.exceptions import ConfigurationError
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=flagyard-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls__cert_and_key_set__sdks_connect_with_the_root_certificate_plaintext_refused(
    seeded: str, planes: list[Plane], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    settings = settings_for(seeded, data_plane_tls_cert_file=cert, data_plane_tls_key_file=key)
    plane = Plane(settings).start()
    planes.append(plane)
    target = f"127.0.0.1:{plane.port}"
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())

    for mode in ("remote", "local"):
        with FlagyardClient(
            target=target,
            sdk_key=SDK_KEY,
            mode=mode,
            credentials=credentials,
            ready_timeout=10,  # type: ignore[arg-type]
        ) as client:
            assert client.ready, mode
            assert client.string("banner", "d") == "Welcome", mode

    plaintext = grpc.insecure_channel(target)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.EvaluationServiceStub(plaintext).ResolveString(
                pb.ResolveRequest(flag_key="banner"),
                metadata=(("authorization", f"Bearer {SDK_KEY}"),),
                timeout=3,
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        plaintext.close()


def test_tls__only_one_of_cert_and_key__settings_refused_and_the_server_does_not_start(
    seeded: str, certificate: tuple[Path, Path]
) -> None:
    cert, _key = certificate
    with pytest.raises(ValidationError, match="data_plane_tls_cert_file and data_plane_tls_key_file"):
        settings_for(seeded, data_plane_tls_cert_file=cert)

    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGYARD_")}
    env |= {"FLAGYARD_DATA_PLANE_TLS_CERT_FILE": str(cert), "FLAGYARD_METRICS_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "flagyard.data_plane", "--port", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "data_plane_tls_key_file" in done.stderr


def test_tls__unreadable_key_file__the_server_does_not_start(
    seeded: str, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, _key = certificate
    settings = settings_for(seeded, data_plane_tls_cert_file=cert, data_plane_tls_key_file=tmp_path / "nope")

    with pytest.raises(ConfigurationError, match="cannot read the TLS certificate or key"):
        Plane(settings).start()


def list_services(port: int) -> set[str] | grpc.StatusCode:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [answer] = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        return {s.name for s in answer.list_services_response.service}
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    finally:
        channel.close()


@pytest.mark.parametrize(("mode", "setting"), [("production", None), ("development", False)])
def test_reflection__production_default_or_turned_off__unimplemented(
    seeded: str, planes: list[Plane], mode: str, setting: bool | None
) -> None:
    """(Development mode serves it by default: test_dp_evaluation's health-and-reflection test.)"""
    plane = Plane(settings_for(seeded, mode=mode, data_plane_reflection=setting)).start()
    planes.append(plane)

    assert list_services(plane.port) == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("host", ["*", "", "::", "[::]", "0.0.0.0"])
def test_grpc_host__wildcard_spellings__serves_on_loopback(
    seeded: str, planes: list[Plane], host: str
) -> None:
    """Every wildcard `flagyard up` accepts for its other listeners binds the data plane too."""
    plane = Plane(settings_for(seeded, grpc_host=host)).start()
    planes.append(plane)

    with FlagyardClient(
        target=f"127.0.0.1:{plane.port}", sdk_key=SDK_KEY, mode="remote", ready_timeout=10
    ) as client:
        assert client.string("banner", "d") == "Welcome"
