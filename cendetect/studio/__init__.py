"""cendetect studio: a local web page to run the detector on a folder, review and correct every
mask, and export (docs/studio.md).

:func:`serve` starts it; :class:`~cendetect.studio.session.Studio` is the state behind the page
(folder, records, detection worker, edits), :mod:`cendetect.studio.state` the records and their
sidecar files, :mod:`cendetect.studio.seed` the one-click regions, :mod:`cendetect.studio.export`
the exports and :mod:`cendetect.studio.server` the web app. Needs the optional extra
``cendetect[studio]`` (Starlette and uvicorn).
"""

from __future__ import annotations

import socket
import sys
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cendetect.detector import Detector

__all__ = ["serve", "free_port"]

DEFAULT_PORT = 8765


def free_port(host: str, first: int, tries: int = 20) -> int:
    """``first`` or the next port after it that ``host`` can bind (0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in [0] if first == 0 else range(first, first + tries):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError(f"no free port on {host} in {first}-{first + tries - 1}")


def serve(
    load_detector: Callable[[], Detector],
    folder: str | Path | None = None,
    output: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    open_browser: bool = True,
    threshold: float = 0.3,
    max_pixels: int | None = None,
) -> None:
    """Run the studio until interrupted (Ctrl-C).

    Args:
        load_detector: makes the detector (called once, when the first folder opens).
        folder: the folder to open at once (None: the page asks for one).
        output: its output folder (default ``<folder>-cendetect`` beside it).
        host: the address to bind; anything but loopback requires the printed URL's token.
        port: the first port tried (the next free one is taken if it is busy; 0: any).
    """
    import uvicorn

    from cendetect.io.decode import DEFAULT_MAX_PIXELS
    from cendetect.studio.server import LOOPBACK, create_app, new_token
    from cendetect.studio.session import Studio

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    studio = Studio(load_detector, threshold=threshold, max_pixels=limit)
    port = free_port(host, port)
    token = None if host in LOOPBACK else new_token()
    settings = {"bind": host, "port": port, "token": token}
    app = create_app(studio, settings)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    if folder is not None:
        threading.Thread(target=studio.open, args=(folder, output), daemon=True).start()
    print(f"cendetect studio: {url}", flush=True)
    print("cendetect studio: press Ctrl-C to stop", file=sys.stderr, flush=True)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    # open event streams would hold a graceful shutdown (Ctrl-C) forever: give them 2 s
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2)  # fmt: skip
    uvicorn.Server(config).run()
