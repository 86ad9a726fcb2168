"""``Drip``: a raw loopback HTTP server that answers slowly or endlessly, for testing that a
provider's transport bounds a request in time and size (a slow-drip vendor must not hang a
call; an endless answer must not fill memory)."""

from __future__ import annotations

import socket
import threading
import time

__all__ = ["Drip"]


class Drip:
    """A raw loopback HTTP server: headers, then ``piece`` every ``every`` seconds until the
    client goes away (``length`` None: no Content-Length, the body ends when the socket does)."""

    def __init__(self, *, piece: bytes = b" ", every: float = 0.5, length: int | None = 100_000,
                 headers: str = "") -> None:
        self.piece, self.every, self.length, self.headers = piece, every, length, headers
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + self.headers
            head += f"Content-Length: {self.length}\r\n" if self.length else "Connection: close\r\n"
            try:
                conn.sendall((head + "\r\n").encode())
                while not self._stop.is_set():
                    conn.sendall(self.piece)
                    time.sleep(self.every)
            except OSError:  # the client gave up: what the test wants
                return

    def __enter__(self) -> Drip:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
