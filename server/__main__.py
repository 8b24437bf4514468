"""Command line: `python -m server` runs the app; `python -m server export DIR` exports the page.

python -m server [--host HOST] [--port PORT]
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


def serve(args: argparse.Namespace) -> None:
    import dataclasses

    import uvicorn

    from . import logs
    from .app import create_app

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        sys.exit(f"configuration error: {error}")
    settings = dataclasses.replace(
        settings, host=args.host or settings.host, port=args.port or settings.port
    )
    logs.configure(settings.log_level, settings.secrets)
    app = create_app(settings)
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    pipeline = "Layercode's cloud" if settings.uses_cloud else "the embedded pipeline"
    print(
        f"\n  Open http://{shown_host}:{settings.port}/ in your browser "
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
