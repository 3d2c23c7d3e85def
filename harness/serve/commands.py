"""The ``harness serve`` command: load a model with its backend, then serve it until interrupted."""

from __future__ import annotations

import socket
from typing import Annotated, Optional

import typer

from harness.errors import UserError

EXTRA_HINT = "pip install 'tinylm-harness[serve]'"
LOOPBACK = "127.0.0.1"


def serve(
    spec: Annotated[str, typer.Argument(help="Model spec to serve, e.g. 2.5m, tinylm:PATH, hf:org/name.")],
    host: Annotated[
        str, typer.Option(help="Address to bind; the default keeps the server on this machine.")
    ] = LOOPBACK,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    name: Annotated[Optional[str], typer.Option("--name", help="Model name clients use (default: the spec).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="Weights dtype for backends that support it.")] = "float32",
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads.")] = None,
    max_queue: Annotated[int, typer.Option(help="Requests that may wait; more are answered 503 + Retry-After.")] = 256,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow Hub models that ship their own code.")] = False,
    model_option: Annotated[
        Optional[list[str]], typer.Option("--model-option", help="Backend option KEY=VALUE (repeatable).")
    ] = None,
) -> None:
    """Serve SPEC over the OpenAI completions API (/v1/completions, /v1/models, /health) until Ctrl-C."""
    try:
        import uvicorn

        from harness.serve.app import create_app
    except ImportError:
        raise UserError(f"'harness serve' needs the [serve] extra: {EXTRA_HINT}") from None
    from harness.cli import _registry, console
    from harness.models import check_spec, load_model
    from harness.types import MAX_THREADS, LoadOptions
    from harness.user_text import plain
    from harness.validation import check_int, parse_model_options

    check_int("--port", port, 1, 65535)
    check_int("--max-queue", max_queue, 1, 1_000_000)
    if threads is not None:
        check_int("--threads", threads, 1, MAX_THREADS)
    check_bind(host, port)  # before loading the model: a port in use is one line, not a load then a crash
    registry = _registry(None)
    options = LoadOptions(
        device=device,
        dtype=dtype,
        threads=threads,
        trust_remote_code=trust_remote_code,
        extra=parse_model_options(model_option or []),
    )
    check_spec(spec, registry, options)
    model = load_model(spec, registry, options, name=name or spec)
    served = name or spec
    app = create_app(model, served, max_queue)
    console.print(plain(f"serving {served} ({model.info.backend}) at http://{host}:{port}/v1"), soft_wrap=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot start (the port was taken meanwhile)
        server.started = False
    finally:
        model.close()
    if not server.started:
        raise UserError(f"could not serve on {host}:{port} (is the port in use?); choose another with --port")


def check_bind(host: str, port: int) -> None:
    """Refuse an address this machine cannot listen on, as uvicorn would bind it (SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"cannot serve on {host}:{port} ({exc.strerror or exc}); choose another --port, or a --host of this machine"
            ) from None


def add_commands(app: typer.Typer) -> None:
    app.command("serve")(serve)
