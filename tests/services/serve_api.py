"""The API in a process of its own, on a real uvicorn bound to 127.0.0.1 over a fresh embedded
store, so a test can watch that process (its memory, what it reads) from outside.

`python -m tests.services.serve_api DATA_DIR MAX_REQUEST_BYTES` prints one JSON line, the port
and an admin token, once the socket listens, then serves until terminated. uvicorn runs as
`distillguard serve` runs it without trusted proxies: no proxy headers.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import orjson
import uvicorn

from core.settings import Settings
from distillguard.wiring import uvicorn_options
from services.api import create_app
from services.auth import create_token
from storage import EmbeddedClickHouse


def serve(data_dir: Path, max_request_bytes: int) -> None:
    store = EmbeddedClickHouse(data_dir / "chdb", database="dgtest_edge_server")
    store.migrate()
    admin = create_token(store, "admin", "edge-server")[0]
    app = create_app(Settings(data_dir=data_dir, max_request_bytes=max_request_bytes), store)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)  # connections queue until uvicorn accepts them
    port = listener.getsockname()[1]
    print(orjson.dumps({"port": port, "admin": admin}).decode(), flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, **uvicorn_options())
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]))
