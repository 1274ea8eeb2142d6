"""``flagyard up``: the whole of Flagyard on this machine, in one command.

1. Settings from ``FLAGYARD_*`` variables and ``.env`` (the environment wins; options win over both).
2. Preflight: PostgreSQL and Redis answer, the ports are free; otherwise say which, where, and how to
   start it, and exit 1.
3. The database is created if missing and migrated to the newest schema (Alembic).
4. First run only: a demo project (``development`` and ``production``, a kill switch, a percentage
   rollout, a JSON configuration with a rule for Germany), an admin key and an SDK key per environment —
   printed once, stored as hashes only.
5. The control plane (uvicorn), the syncer workers and the data plane run as one supervised group
   (:mod:`flagyard.cli.supervisor`) with prefixed logs; once each is ready, and the demo's SDK keys
   evaluate through the data plane, a banner shows the URLs and keys.
6. Ctrl-C or SIGTERM stops them in order: control plane (no new writes), data plane, then the syncers
   (each finishes its current job; the queue, the outbox relay and the reconcile keep everything else).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .addresses import bound, local_host, url_host

if TYPE_CHECKING:
    from .supervisor import ChildSpec, Output
    from .up_seed import DemoKeys
    from .up_setup import StackSettings

CONTROL_PLANE = "control-plane"
DATA_PLANE = "data-plane"
GRACEFUL_HTTP_SECONDS = 10


def up_command(
    port: Annotated[
        int | None, typer.Option(help="REST API port (env FLAGYARD_HTTP_PORT, default 8000)")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="REST API address (env FLAGYARD_HTTP_HOST, default 127.0.0.1)")
    ] = None,
    grpc_port: Annotated[
        int | None, typer.Option(help="gRPC port (env FLAGYARD_GRPC_PORT, default 50051)")
    ] = None,
    syncer_workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="syncer worker processes (env FLAGYARD_SYNCER_WORKERS, default 1)"),
    ] = None,
    data_plane_processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=256,
            help="data-plane processes on one port (env FLAGYARD_DATA_PLANE_PROCESSES, default 1)",
        ),
    ] = None,
    seed: Annotated[bool, typer.Option("--seed/--no-seed", help="seed the demo project on first run")] = True,
    write_keys: Annotated[
        Path | None,
        typer.Option(help="also write the demo's new keys to this file (JSON, mode 0600) — only if you ask"),
    ] = None,
    env_file: Annotated[
        Path, typer.Option(help="FLAGYARD_* variables to read (the environment wins)")
    ] = Path(".env"),
) -> None:
    """Run Flagyard on this machine: control plane, syncer and data plane, with a demo on first run."""
    try:
        from pydantic import ValidationError

        from . import up_setup
        from .exceptions import PreflightError
    except ImportError as exc:
        typer.echo(f"flagyard up needs the server extra: pip install 'flagyard[server]' ({exc})", err=True)
        raise typer.Exit(2) from exc

    overrides = {
        "FLAGYARD_HTTP_PORT": port,
        "FLAGYARD_HTTP_HOST": host,
        "FLAGYARD_GRPC_PORT": grpc_port,
        "FLAGYARD_SYNCER_WORKERS": syncer_workers,
        "FLAGYARD_DATA_PLANE_PROCESSES": data_plane_processes,
    }
    up_setup.load_environment(env_file, {k: str(v) for k, v in overrides.items() if v is not None})
    up_setup.loopback_in_development()
    try:
        stack = up_setup.load_settings()
    except ValidationError as exc:
        # Only the messages: pydantic's own text would repeat the input, secrets included.
        for error in exc.errors(include_url=False, include_input=False):
            where = "FLAGYARD_" + "_".join(str(part) for part in error["loc"]).upper() if error["loc"] else ""
            typer.echo(
                f"flagyard up: invalid settings: {where + ': ' if where else ''}{error['msg']}", err=True
            )
        raise typer.Exit(2) from exc
    if stack.data_plane.grpc_port == 0:
        typer.echo(
            "flagyard up: the gRPC port must be fixed (--grpc-port or FLAGYARD_GRPC_PORT, not 0)", err=True
        )
        raise typer.Exit(2)
    try:
        demo, existed = _prepare(stack, seed=seed)
    except PreflightError as exc:
        for problem in exc.problems:
            typer.echo(f"flagyard up: {problem}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if demo is not None and write_keys is not None:
        _write_keys(write_keys, stack, demo)
    if existed and write_keys is not None:
        _say(f"not writing {write_keys}: the demo exists, its keys were shown when it was seeded")
    raise typer.Exit(_run(stack, demo, demo_existed=existed, keys_file=write_keys))


def _say(text: str) -> None:
    typer.echo(f"flagyard up: {text}")


def _prepare(stack: StackSettings, *, seed: bool) -> tuple[DemoKeys | None, bool]:
    """Preflight, database, migrations and (first run only) the demo: (its keys if seeded now, whether
    it existed already)."""
    import sqlalchemy as sa

    from . import up_setup
    from .exceptions import PreflightError
    from .up_seed import DEMO_PROJECT, seed_demo

    settings = stack.control_plane
    up_setup.preflight(stack)
    where = up_setup.masked(settings.sqlalchemy_url)
    if up_setup.ensure_database(settings):
        _say(f"created the database ({where})")
    before, head = up_setup.migrate(settings)
    _say(f"database schema at {head}" + (f" (migrated from {before or 'nothing'})" if before != head else ""))
    if not seed:
        return None, False
    if settings.mode == "production":
        _say("production mode: no demo project is seeded")
        return None, False
    engine = sa.create_engine(settings.sqlalchemy_url, poolclass=sa.pool.NullPool)
    try:
        demo = seed_demo(settings, engine)
    except (sa.exc.SQLAlchemyError, ValueError) as exc:
        raise PreflightError([f"seeding the demo failed: {str(exc).splitlines()[0]}"]) from exc
    finally:
        engine.dispose()
    _say(f"seeded the demo project '{DEMO_PROJECT}'" if demo else f"the demo project '{DEMO_PROJECT}' exists")
    return demo, demo is None


def _write_keys(path: Path, stack: StackSettings, demo: DemoKeys) -> None:
    body = {
        "rest": _rest_url(stack) + "/api/v1",
        "grpc": _grpc_target(stack),
        "admin_key": demo.admin,
        "sdk_keys": demo.sdk,
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(body, f, indent=2)
            f.write("\n")
    except OSError as exc:
        _say(f"could not write the keys to {path}: {exc}; they are shown below instead")
        return
    _say(f"wrote the demo's keys to {path} (mode 0600)")


def _rest_url(stack: StackSettings) -> str:
    return f"http://{url_host(local_host(stack.up.http_host))}:{stack.up.http_port}"


def _grpc_target(stack: StackSettings) -> str:
    return f"{url_host(local_host(stack.data_plane.grpc_host))}:{stack.data_plane.grpc_port}"


def _ofrep_url(stack: StackSettings) -> str | None:
    """The OFREP base URL to open here (None: OFREP is off)."""
    settings = stack.data_plane
    if not settings.ofrep_enabled:
        return None
    scheme = "https" if settings.data_plane_tls_cert_file is not None else "http"
    return f"{scheme}://{url_host(local_host(settings.ofrep_host))}:{settings.ofrep_port}"


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("FLAGYARD_LOG_JSON", "false")  # readable lines behind the prefixes
    env["PYTHONUNBUFFERED"] = "1"  # a pipe would otherwise hold the logs back
    env.update(extra)
    return env


def child_specs(stack: StackSettings) -> list[ChildSpec]:
    """The group, in start order: control plane, syncer workers, data plane."""
    from . import up_probes
    from .supervisor import ChildSpec

    python = sys.executable
    stop = stack.up.up_stop_timeout_seconds
    specs = [
        ChildSpec(
            CONTROL_PLANE,
            [
                python,
                "-m",
                "uvicorn",
                "--factory",
                "flagyard.control_plane.main:app_from_env",
                "--host",
                stack.up.http_host,
                "--port",
                str(stack.up.http_port),
                "--no-access-log",
                "--timeout-graceful-shutdown",
                str(GRACEFUL_HTTP_SECONDS),
            ],
            _child_env(),
            up_probes.http_ready(_rest_url(stack) + "/readyz"),
            stop,
        )
    ]
    for i in range(stack.syncer.syncer_workers):
        # The first worker serves the syncer's metrics and runs the periodic reconcile; the others do
        # neither (they reconcile once as they start, which the version guard makes harmless).
        extra = (
            {}
            if i == 0
            else {"FLAGYARD_SYNCER_METRICS_PORT": "0", "FLAGYARD_RECONCILE_INTERVAL_SECONDS": "0"}
        )
        specs.append(
            ChildSpec(
                f"syncer-{i + 1}",
                [python, "-m", "flagyard.syncer", "worker", "--processes", "1"],
                _child_env(**extra),
                up_probes.syncer_ready(stack.syncer),
                stop,
            )
        )
    specs.append(
        ChildSpec(
            DATA_PLANE,
            [
                python,
                "-m",
                "flagyard.data_plane",
                "--port",
                str(stack.data_plane.grpc_port),
                "--processes",
                str(stack.data_plane.data_plane_processes),
            ],
            _child_env(),
            up_probes.grpc_ready(_grpc_target(stack)),
            stop,
        )
    )
    return specs


def stop_order(specs: list[ChildSpec]) -> list[str]:
    """Control plane first (no new writes), then the data plane, then the syncers (they finish their job)."""
    syncers = [s.name for s in specs if s.name.startswith("syncer-")]
    return [CONTROL_PLANE, DATA_PLANE, *syncers]


def _run(stack: StackSettings, demo: DemoKeys | None, *, demo_existed: bool, keys_file: Path | None) -> int:
    from . import up_probes
    from .supervisor import Output, Supervisor

    specs = child_specs(stack)
    output = Output(sys.stdout, [s.name for s in specs])
    supervisor = Supervisor(
        specs, output, stop_order=stop_order(specs), ready_timeout=stack.up.up_ready_timeout_seconds
    )
    group_ready = None
    if demo is not None:
        group_ready = up_probes.demo_served(stack, _grpc_target(stack), list(demo.sdk.values()))

    def on_ready() -> None:
        banner(output, stack, demo, demo_existed=demo_existed, keys_file=keys_file, pids=supervisor.pids())

    code = supervisor.run(group_ready=group_ready, on_ready=on_ready)
    output.say("stopped" if code == 0 else "stopped after a failure (see above)")
    return code


def banner(
    output: Output,
    stack: StackSettings,
    demo: DemoKeys | None,
    *,
    demo_existed: bool,
    keys_file: Path | None,
    pids: dict[str, int],
) -> None:
    """The ready banner: where everything answers, and the demo's keys (this once)."""
    from .up_seed import DEMO_ENVIRONMENTS, DEMO_FLAGS, DEMO_PROJECT

    rest = _rest_url(stack)
    api = rest + "/api/v1"
    metrics = [rest + "/metrics"]
    binds = [f"REST {bound(stack.up.http_host, stack.up.http_port)}"]
    binds.append(f"gRPC {bound(stack.data_plane.grpc_host, stack.data_plane.grpc_port)}")
    for name, host, port in (
        ("data-plane metrics", stack.data_plane.metrics_host, stack.data_plane.metrics_port),
        ("syncer metrics", stack.syncer.syncer_metrics_host, stack.syncer.syncer_metrics_port),
    ):
        if port:
            metrics.append(f"http://{url_host(local_host(host))}:{port}/metrics")
            binds.append(f"{name} {bound(host, port)}")
    dp = stack.data_plane
    flagd = []
    if dp.flagd_enabled:
        here = url_host(local_host(dp.grpc_host))
        flagd = [
            f"  flagd      RPC {here}:{dp.flagd_rpc_port}  in-process sync {here}:{dp.flagd_sync_port}   "
            "(stock OpenFeature flagd providers; SDK key as 'authorization: Bearer <key>' or selector "
            "'sdkKey=<key>')"
        ]
        binds += [
            f"flagd RPC {bound(dp.grpc_host, dp.flagd_rpc_port)}",
            f"flagd sync {bound(dp.grpc_host, dp.flagd_sync_port)}",
        ]
    ofrep = _ofrep_url(stack)
    ofrep_line = []
    if ofrep:
        ofrep_line.append(f"  OFREP      {ofrep}   (OpenFeature OFREP providers; X-API-Key: an SDK key)")
        binds.append(f"OFREP {bound(stack.data_plane.ofrep_host, stack.data_plane.ofrep_port)}")
    rule = "─" * 78
    processes = f"data plane, {stack.data_plane.data_plane_processes} process(es)"
    lines = [
        rule,
        f"Flagyard is up ({stack.control_plane.mode} mode). Ctrl-C stops everything.",
        f"  console    {rest}/ui/   (sign in with the admin key)",
        f"  REST API   {api}   (OpenAPI docs: {rest}/docs)",
        f"  gRPC       {_grpc_target(stack)}   ({processes})",
        *flagd,
        *ofrep_line,
        f"  metrics    {'  '.join(metrics)}",
        f"  listening  {', '.join(binds)}",
        f"  processes  {', '.join(f'{name} {pid}' for name, pid in pids.items())}",
    ]
    if demo is not None:
        lines += [
            f"  demo       project '{DEMO_PROJECT}', environments {', '.join(DEMO_ENVIRONMENTS)}",
            f"             flags {', '.join(f['key'] for f in DEMO_FLAGS)}",
            "Keys — shown this once; only their SHA-256 is stored:",
        ]
        rows = [("admin key:", demo.admin), *((f"SDK key ({env}):", key) for env, key in demo.sdk.items())]
        width = max(len(label) for label, _ in rows)
        lines += [f"  {label:<{width}}  {key}" for label, key in rows]
        if keys_file is not None:
            lines.append(f"  (also written to {keys_file})")
    elif demo_existed:
        sdk_keys = f"{api}/projects/{DEMO_PROJECT}/environments/production/sdk-keys"
        lines += [
            f"  demo       project '{DEMO_PROJECT}' exists: its keys were shown when it was seeded (only",
            "             their hashes are stored). New keys, with an admin key in $ADMIN:",
            "    curl -H \"Authorization: Bearer $ADMIN\" -H 'content-type: application/json' \\",
            f'      {sdk_keys} -d \'{{"name": "my app"}}\'',
            f'    (admin keys: POST {api}/api-keys with {{"name": …, "role": "admin"}};'
            " or `flagyard keys create --help`)",
        ]
    lines.append(rule)
    for line in lines:
        output.raw(line)
