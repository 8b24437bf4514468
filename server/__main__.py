"""Command line: `python -m server` runs the app; `python -m server export DIR` exports the page.

python -m server [--host HOST] [--port PORT] [--ssl-certfile CERT --ssl-keyfile KEY]
python -m server export DIR --authorize-url URL [--pipeline-id ID]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import Settings, SettingsError


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the app (the default)")
    for p in (parser, serve):
        p.add_argument("--host", help="interface to listen on (env HOST, default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port to listen on (env PORT, default 8000)")
        p.add_argument(
            "--ssl-certfile",
            type=Path,
            help="serve HTTPS with this certificate (PEM; env SSL_CERTFILE): browsers give the "
            "microphone only to HTTPS pages or localhost",
        )
        p.add_argument(
            "--ssl-keyfile", type=Path, help="the certificate's private key (PEM; env SSL_KEYFILE)"
        )
    export = commands.add_parser("export", help="export the page as a static folder")
    export.add_argument("directory", type=Path)
    export.add_argument(
        "--authorize-url",
        required=True,
        help="where the exported page POSTs to authorize (e.g. https://api.example.com/api/authorize)",
    )
    export.add_argument("--pipeline-id", default="demo", help="pipeline id the page asks for")
    return parser.parse_args(argv)


def draining_server(app, config):
    """A uvicorn server whose first SIGTERM/SIGINT drains the app before shutting down.

    uvicorn alone closes every WebSocket with 1012 the moment the signal arrives, cutting off
    answers mid-sentence. Here the first signal starts `app.drain` (new sessions refused,
    answers allowed to finish up to DRAIN_GRACE, sockets then closed with 1012) and uvicorn's own
    shutdown follows it; a second SIGINT still forces an immediate exit.
    """
    import asyncio

    import uvicorn

    from .app import drain

    class DrainingServer(uvicorn.Server):
        draining: asyncio.Task | None = None
        loop: asyncio.AbstractEventLoop | None = None

        async def main_loop(self) -> None:
            self.loop = asyncio.get_running_loop()
            await super().main_loop()

        def handle_exit(self, sig, frame) -> None:
            if self.loop is None or self.draining is not None or self.should_exit:
                super().handle_exit(sig, frame)
                return
            self._captured_signals.append(sig)
            # A signal handler may interrupt the loop anywhere: hand over thread-safely.
            self.loop.call_soon_threadsafe(self._start_draining)

        def _start_draining(self) -> None:
            if self.draining is None:
                self.draining = asyncio.ensure_future(self._drain_then_exit())

        async def _drain_then_exit(self) -> None:
            try:
                await drain(app)
            finally:
                self.should_exit = True

    return DrainingServer(config)


def tls_files(args: argparse.Namespace, environ: dict[str, str]) -> tuple[Path, Path] | None:
    """The certificate and key to serve HTTPS with, or None for plain HTTP. Both or neither;
    each must be a readable file (checked here, so a typo is one clear line, not a traceback)."""
    cert = args.ssl_certfile or (
        Path(environ["SSL_CERTFILE"]) if environ.get("SSL_CERTFILE") else None
    )
    key = args.ssl_keyfile or (Path(environ["SSL_KEYFILE"]) if environ.get("SSL_KEYFILE") else None)
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise SettingsError("HTTPS needs both --ssl-certfile and --ssl-keyfile (see README)")
    for name, path in (("--ssl-certfile", cert), ("--ssl-keyfile", key)):
        if not path.is_file():
            raise SettingsError(f"{name} {path}: no such file")
    return cert, key


def serve(args: argparse.Namespace) -> None:
    import dataclasses
    import os

    import uvicorn

    from . import logs
    from .app import create_app

    try:
        settings = Settings.from_env()
        tls = tls_files(args, dict(os.environ))
    except SettingsError as error:
        sys.exit(f"configuration error: {error}")
    settings = dataclasses.replace(
        settings, host=args.host or settings.host, port=args.port or settings.port
    )
    logs.configure(settings.log_level, settings.secrets)
    app = create_app(settings)
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    pipeline = "Layercode's cloud" if settings.uses_cloud else "the embedded pipeline"
    scheme = "https" if tls else "http"
    print(
        f"\n  Open {scheme}://{shown_host}:{settings.port}/ in your browser "
        f"(voice pipeline: {pipeline}).\n",
        flush=True,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        ws_max_size=1024 * 1024,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
    )
    draining_server(app, config).run()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "export":
        from .export import export_site

        target = export_site(args.directory, args.authorize_url, args.pipeline_id)
        print(f"exported to {target}")
        return
    serve(args)


if __name__ == "__main__":
    main()
