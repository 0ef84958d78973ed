"""``mood-dpa view --serve PORT``: the browser folder over HTTP, for a machine one reaches by ssh.

Binds 127.0.0.1 unless another address is asked for (then anyone who can reach that address reads the
scans: the caller says so). Read-only: Python's static file handler, GET and HEAD only, no listing
outside the folder. Runs until Ctrl-C / SIGTERM, or until ``stop`` is set (tests).
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from ..errors import MoodError

LOCALHOST = "127.0.0.1"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def serve_folder(folder: str | Path, port: int, host: str = LOCALHOST, *, page: str = "index.html",
                 on_ready: Callable[[str], None] = print, stop: threading.Event | None = None) -> None:
    """Serve ``folder`` on ``host:port`` (port 0: a free one) and call ``on_ready`` with the page's URL."""
    folder = Path(folder)
    if not (folder / page).is_file():
        raise MoodError(f"{folder}: no {page} to serve")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise MoodError(f"cannot serve on {host}:{port} ({exc.strerror or exc})") from None
    with server:
        shown = f"[{host}]" if ":" in host else host
        on_ready(f"http://{shown}:{server.server_address[1]}/{page}")
        if stop is None:
            server.serve_forever(poll_interval=0.5)
            return
        worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        worker.start()
        stop.wait()
        server.shutdown()
        worker.join()
