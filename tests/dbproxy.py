"""A TCP proxy in front of the test PostgreSQL that a test can cut and restore: a database outage.

Cutting resets every open connection and stops listening (new connections are refused), which is
what a client sees when the server goes down; restoring listens on the same port again. The
session's server itself keeps running for the other tests.
"""

from __future__ import annotations

import socket
import threading
import urllib.parse


class CuttableProxy:
    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
        port = parts.port or 5432
        if host.startswith("/"):
            self._upstream = (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
        else:
            self._upstream = (socket.AF_INET, (host, port))
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()
        user = urllib.parse.quote(parts.username or "postgres")
        auth = user if parts.password is None else f"{user}:{urllib.parse.quote(parts.password)}"
        self.url = f"postgresql://{auth}@127.0.0.1:{self.port}{parts.path}"

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.port = s.getsockname()[1]
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            family, address = self._upstream
            upstream = socket.socket(family, socket.SOCK_STREAM)
            try:
                upstream.connect(address)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._live |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self._lock:
                self._live.discard(src)
                self._live.discard(dst)

    def cut(self) -> None:
        """The database goes away: open connections reset, new ones refused."""
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            live = list(self._live)
        for s in live:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restore(self) -> None:
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.cut()
