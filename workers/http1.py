"""HTTP/1.1 POSTs for webhook deliveries: the request written in one send, the
answer read from a buffer of the connection's own.

With http.client a delivery cost the worker about 190 us more CPU than with
this module (docs/benchmarks.md): its ``parse_headers`` runs the ``email``
package's parser over every answer's headers, it makes a new buffered file for
every answer, and it validates each request header on its own. A webhook
sender needs little of HTTP: the status, the first bytes of the body,
Retry-After, and whether the connection can carry the next request. Errors are
http.client's exception types, so attempts record the same error text as before.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MAX_LINE = 65536      # http.client's limits: a longer line or more headers is refused
MAX_HEADERS = 100
_RECV = 65536
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")   # http.client's check (CVE-2019-9740)
# chunk-size = 1*HEXDIG (RFC 9112 7.1). Not int(s, 16): it also reads "0x1a", "+a"
# and "1_0", which are not sizes (and which h11 refuses).
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]+")
_WANTED = (b"content-length", b"transfer-encoding", b"connection", b"retry-after",
           b"keep-alive")

Opener = Callable[[tuple[str, int], float], socket.socket]


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    retry_after: str | None


class Connection:
    """One kept-alive connection to an origin. ``sock`` is what the watchdog
    shuts; during a TLS handshake it is the TLS socket before the handshake."""

    def __init__(self, host: str, port: int, timeout: float, opener: Opener,
                 tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self._opener, self._tls = opener, tls
        self._buf = bytearray()
        self._host_header = _host_header(host, port, 443 if tls else 80)
        if _BAD_TARGET.search(self._host_header):  # http.client's _validate_host
            raise http.client.InvalidURL(f"URL can't contain control characters: {host!r}")

    def connect(self) -> None:
        sock = self._opener((self.host, self.port), self.timeout)
        if self._tls is None:
            self.sock = sock
            return
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host,
                                          do_handshake_on_connect=False)
        self.sock.do_handshake()

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self._buf.clear()
        if sock is not None:
            sock.close()

    def post(self, target: str, body: bytes, headers: Iterable[tuple[str, str]],
             keep: int, drain: int) -> tuple[Answer, bool]:
        """Send one POST and read its answer: the status, up to ``keep`` bytes
        of the body and Retry-After; and whether the connection can be reused
        (the answer ended within ``keep + drain`` bytes and nobody asked to close)."""
        if _BAD_TARGET.search(target):
            raise http.client.InvalidURL(f"URL can't contain control characters: {target!r}")
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.sock.sendall(self._head(target, len(body), headers) + body)
        status, version, fields = self._answer_head()
        answer, reusable = self._body(status, _will_close(version, fields), fields, keep, drain)
        # Bytes beyond the answer's end: the framing can no longer be trusted, and the
        # next request on this connection would read them as its answer.
        return answer, reusable and not self._buf

    def _head(self, target: str, length: int, headers: Iterable[tuple[str, str]]) -> bytes:
        lines = [f"POST {target} HTTP/1.1", f"Host: {self._host_header}",
                 "Accept-Encoding: identity", f"Content-Length: {length}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        # ASCII, as http.client sends a request line: a non-ASCII path is refused
        # (UnicodeEncodeError), never sent as raw bytes.
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")

    def _answer_head(self) -> tuple[int, str, dict[bytes, bytes]]:
        """The final answer's status, version and wanted headers; 1xx are skipped."""
        first = True
        while True:
            line = self._line()
            if not line:
                if first:
                    raise http.client.RemoteDisconnected(
                        "Remote end closed connection without response")
                raise http.client.IncompleteRead(b"")
            first = False
            version, status = _status_line(line)
            fields = self._fields()
            if not 100 <= status < 200 or status == 101:
                return status, version, fields

    def _fields(self) -> dict[bytes, bytes]:
        """The wanted headers; a repeated one's values joined with commas (RFC 9110
        5.3), so a second Transfer-Encoding or Content-Length is not overlooked."""
        fields: dict[bytes, bytes] = {}
        name = b""
        for _ in range(MAX_HEADERS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return fields
            if not line.endswith(b"\n"):
                # Closed before the blank line that ends the head: not an answer (a
                # 200 cut after its status line was taken for a whole one).
                raise http.client.IncompleteRead(b"")
            if line[:1] in (b" ", b"\t"):
                # obs-fold: the value goes on, after one space (RFC 9112 5.2).
                if name in fields:
                    fields[name] += b" " + line.strip()
                continue
            name, sep, value = line.partition(b":")
            name = name.strip().lower()
            if sep and name in _WANTED:
                value = value.strip()
                fields[name] = fields[name] + b", " + value if name in fields else value
            else:
                name = b""
        raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")

    def _body(self, status: int, will_close: bool, fields: dict[bytes, bytes],
              keep: int, drain: int) -> tuple[Answer, bool]:
        retry_after = fields.get(b"retry-after")
        answer = Answer(status, b"", None if retry_after is None
                        else retry_after.decode("latin-1"))
        coding = fields.get(b"transfer-encoding")
        if status in (101, 204, 304):
            return answer, not will_close and status != 101
        if coding is not None and coding.lower().rsplit(b",", 1)[-1].strip() == b"chunked":
            answer.body, complete = self._chunked(keep, keep + drain)
        elif coding is None and (length := _length(fields.get(b"content-length"))) is not None:
            answer.body, complete = self._sized(length, keep, keep + drain)
        else:
            answer.body = self._until_close(keep, keep + drain)
            return answer, False
        return answer, complete and not will_close

    def _sized(self, length: int, keep: int, limit: int) -> tuple[bytes, bool]:
        wanted = min(length, limit)
        if not self._need(wanted):
            raise http.client.IncompleteRead(bytes(self._buf[:keep]), length - len(self._buf))
        return self._take(wanted)[:keep], wanted == length

    def _chunked(self, keep: int, limit: int) -> tuple[bytes, bool]:
        kept, read = bytearray(), 0
        while True:
            # Whitespace may come before an extension or the line end, not before the size.
            digits = self._line().split(b";", 1)[0].rstrip()
            if not _CHUNK_SIZE.fullmatch(digits):
                raise http.client.IncompleteRead(bytes(kept))
            size = int(digits, 16)
            if size == 0:
                self._fields()  # trailers
                return bytes(kept), True
            if read + size > limit:
                # Too long to keep the connection for: keep what the attempt records.
                part = max(0, min(size, keep - len(kept)))
                if not self._need(part):
                    raise http.client.IncompleteRead(bytes(kept))
                return bytes(kept + self._buf[:part]), False
            if not self._need(size + 2):
                raise http.client.IncompleteRead(bytes(kept))
            chunk = self._take(size + 2)
            if chunk[size:] != b"\r\n":
                # Not where the chunk ends: the sizes do not frame this body.
                raise http.client.IncompleteRead(bytes(kept))
            read += size
            if len(kept) < keep:
                kept += chunk[:min(size, keep - len(kept))]

    def _need(self, n: int) -> bool:
        """Fill the buffer to ``n`` bytes; False if the answer ends first."""
        while len(self._buf) < n:
            if not self._fill():
                return False
        return True

    def _until_close(self, keep: int, limit: int) -> bytes:
        while len(self._buf) < limit and self._fill():
            pass
        return bytes(self._buf[:keep])

    def _line(self) -> bytes:
        start = 0
        while (end := self._buf.find(b"\n", start)) < 0:
            if len(self._buf) > MAX_LINE:
                raise http.client.LineTooLong("header line")
            start = len(self._buf)
            if not self._fill():
                return self._take(len(self._buf))
        if end >= MAX_LINE:
            raise http.client.LineTooLong("header line")
        return self._take(end + 1)

    def _take(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _fill(self) -> bool:
        assert self.sock is not None
        data = self.sock.recv(_RECV)
        self._buf += data
        return bool(data)


def _status_line(line: bytes) -> tuple[str, int]:
    text = line.decode("iso-8859-1")
    parts = text.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise http.client.BadStatusLine(text)
    code = parts[1]
    if len(code) != 3 or not (code.isascii() and code.isdigit()):
        raise http.client.BadStatusLine(text)
    status = int(code)
    if status < 100:
        raise http.client.BadStatusLine(text)
    if parts[0] not in ("HTTP/1.0", "HTTP/0.9") and not parts[0].startswith("HTTP/1."):
        raise http.client.UnknownProtocol(parts[0])
    return parts[0], status


def _will_close(version: str, fields: dict[bytes, bytes]) -> bool:
    tokens = {t.strip() for t in fields.get(b"connection", b"").lower().split(b",")}
    if b"close" in tokens:
        return True
    if version.startswith("HTTP/1.") and version not in ("HTTP/1.0",):
        return False
    return not (b"keep-alive" in tokens or b"keep-alive" in fields)


def _length(value: bytes | None) -> int | None:
    """Content-Length: digits only (int() also takes "+2" and "2_0"); repeated with one
    value, that value (RFC 9110 8.6). A bad one is none at all, as http.client had it."""
    if value is None:
        return None
    values = {v.strip() for v in value.split(b",")}
    if len(values) != 1:
        return None
    (digits,) = values
    return int(digits) if digits.isdigit() else None


def _host_header(host: str, port: int, default_port: int) -> str:
    try:
        name = host.encode("ascii").decode("ascii")
    except UnicodeEncodeError:
        name = host.encode("idna").decode("ascii")
    if ":" in name:
        name = f"[{name}]"
    return name if port == default_port else f"{name}:{port}"
