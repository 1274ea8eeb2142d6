"""The addresses ``flagyard up`` prints and probes for its listeners: a listener bound on a wildcard is
reached at the loopback of the wildcard's family, and the banner says it answers on every interface.

Before: a REST API bound on ``::`` was probed and printed at 127.0.0.1, where nothing answers (asyncio
binds ``::`` IPv6-only), so ``flagyard up`` never became ready; one bound on ``*`` (which uvicorn and
prometheus_client take for every interface) failed the preflight as "port in use on *" and was printed as
``http://*:8000``."""

from __future__ import annotations

import asyncio
import io
import urllib.request
from concurrent import futures

import grpc
import pytest
from polling_helpers import free_port
from prometheus_client import CollectorRegistry, start_http_server

from flagyard.cli import up, up_setup
from flagyard.cli.addresses import bound, local_host, url_host
from flagyard.cli.supervisor import Output

# How each plane binds: uvicorn through asyncio's create_server, the metrics servers through
# prometheus_client, the data plane through gRPC; each with the wildcard spellings it accepts.
ASYNCIO_WILDCARDS = ["*", "", "0.0.0.0", "::"]
PROMETHEUS_WILDCARDS = ["*", "0.0.0.0", "::"]
GRPC_WILDCARDS = ["0.0.0.0", "[::]"]


def _asyncio_answers(host: str) -> bool:
    async def main() -> bool:
        port = free_port()  # not 0: a wildcard may bind a socket per family, each on its own port 0
        server = await asyncio.get_running_loop().create_server(asyncio.Protocol, host=host, port=port)
        try:
            _, writer = await asyncio.open_connection(local_host(host), port)
        except OSError:
            return False
        finally:
            server.close()
        writer.close()
        return True

    return asyncio.run(main())


@pytest.mark.parametrize("host", ASYNCIO_WILDCARDS)
def test_local_host__uvicorn_style_listener_on_a_wildcard__answers_there(host: str) -> None:
    assert _asyncio_answers(host)


@pytest.mark.parametrize("host", PROMETHEUS_WILDCARDS)
def test_local_host__metrics_server_on_a_wildcard__serves_metrics_there(host: str) -> None:
    port = free_port()
    server, thread = start_http_server(port, addr=host, registry=CollectorRegistry())
    try:
        with urllib.request.urlopen(f"http://{url_host(local_host(host))}:{port}/metrics", timeout=5) as r:
            assert r.status == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("host", GRPC_WILDCARDS)
def test_local_host__grpc_server_on_a_wildcard__channel_gets_ready_there(host: str) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port(f"{host}:0")
    server.start()
    try:
        with grpc.insecure_channel(f"{url_host(local_host(host))}:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
    finally:
        server.stop(None)


@pytest.mark.parametrize(
    ("host", "printed"),
    [
        ("127.0.0.1", "127.0.0.1:8000"),
        ("::1", "[::1]:8000"),
        ("*", "*:8000 (every interface)"),
        ("", "*:8000 (every interface)"),
        ("0.0.0.0", "0.0.0.0:8000 (every interface)"),
        ("::", "[::]:8000 (every interface)"),
        ("[::]", "[::]:8000 (every interface)"),
    ],
)
def test_bound__each_host__printed_as_set_and_a_wildcard_says_so(host: str, printed: str) -> None:
    assert bound(host, 8000) == printed


@pytest.fixture
def wildcard_stack(monkeypatch: pytest.MonkeyPatch) -> up_setup.StackSettings:
    for name, value in {
        "FLAGYARD_HTTP_HOST": "*",
        "FLAGYARD_HTTP_PORT": "8000",
        "FLAGYARD_GRPC_HOST": "[::]",
        "FLAGYARD_GRPC_PORT": "50051",
        "FLAGYARD_METRICS_HOST": "0.0.0.0",
        "FLAGYARD_METRICS_PORT": "9464",
        "FLAGYARD_SYNCER_METRICS_HOST": "::",
        "FLAGYARD_SYNCER_METRICS_PORT": "9102",
        "FLAGYARD_OFREP_HOST": "[::]",
        "FLAGYARD_OFREP_PORT": "8016",
    }.items():
        monkeypatch.setenv(name, value)
    return up_setup.load_settings()


def test_banner__listeners_on_wildcards__urls_to_open_here_and_every_interface_said(
    wildcard_stack: up_setup.StackSettings,
) -> None:
    stream = io.StringIO()

    up.banner(
        Output(stream, ["flagyard"], color=False),
        wildcard_stack,
        None,
        demo_existed=False,
        keys_file=None,
        pids={"control-plane": 1},
    )

    text = stream.getvalue()
    assert "console    http://127.0.0.1:8000/ui/   (sign in with the admin key)" in text
    assert "REST API   http://127.0.0.1:8000/api/v1   (OpenAPI docs: http://127.0.0.1:8000/docs)" in text
    assert "gRPC       [::1]:50051   " in text
    assert (
        "metrics    http://127.0.0.1:8000/metrics  http://127.0.0.1:9464/metrics  http://[::1]:9102/metrics"
        in text
    )
    assert (
        "listening  REST *:8000 (every interface), gRPC [::]:50051 (every interface), "
        "data-plane metrics 0.0.0.0:9464 (every interface), syncer metrics [::]:9102 (every interface), "
        "flagd RPC [::]:8013 (every interface), flagd sync [::]:8015 (every interface), "
        "OFREP [::]:8016 (every interface)"
    ) in text
    assert "OFREP      http://[::1]:8016   (OpenFeature OFREP providers; X-API-Key: an SDK key)" in text


def test_check_ports__rest_on_star_with_its_port_free__no_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "FLAGYARD_HTTP_HOST": "*",
        "FLAGYARD_HTTP_PORT": str(free_port()),
        "FLAGYARD_GRPC_HOST": "127.0.0.1",
        "FLAGYARD_GRPC_PORT": str(free_port()),
        "FLAGYARD_METRICS_PORT": "0",
        "FLAGYARD_SYNCER_METRICS_PORT": "0",
        "FLAGYARD_OFREP_PORT": str(free_port()),
    }.items():
        monkeypatch.setenv(name, value)

    assert up_setup.check_ports(up_setup.load_settings()) == []


def test_banner__flagd_ports__printed_with_the_address_to_open_and_their_binds(
    wildcard_stack: up_setup.StackSettings,
) -> None:
    stream = io.StringIO()

    up.banner(
        Output(stream, ["flagyard"], color=False),
        wildcard_stack,
        None,
        demo_existed=False,
        keys_file=None,
        pids={"control-plane": 1},
    )

    text = stream.getvalue()
    assert (
        "flagd      RPC [::1]:8013  in-process sync [::1]:8015   (stock OpenFeature flagd providers" in text
    )
    assert "flagd RPC [::]:8013 (every interface), flagd sync [::]:8015 (every interface)" in text


def test_check_ports__flagd_port_wanted_twice__named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGYARD_FLAGD_RPC_PORT", "18015")
    monkeypatch.setenv("FLAGYARD_FLAGD_SYNC_PORT", "18015")

    problems = up_setup.check_ports(up_setup.load_settings())

    assert any("port 18015 is wanted twice (flagd sync)" in p for p in problems), problems
