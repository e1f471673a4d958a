"""workers.http1, the delivery sender's HTTP/1.1: answers scripted byte for byte
over a socket pair, read by it and by http.client (the behaviour it replaces)."""

from __future__ import annotations

import http.client
import socket

import pytest

from tests.workers.http1_support import connection
from workers import http1

KEEP, DRAIN = 16, 64


def _ours(answer: bytes, close: bool = False) -> tuple:
    conn, theirs = connection(answer, close)
    try:
        got, reusable = conn.post("/hook", b"{}", [("X-A", "1")], KEEP, DRAIN)
        return got.status, got.body, got.retry_after, reusable
    except (OSError, http.client.HTTPException) as exc:
        return type(exc)
    finally:
        conn.close()
        theirs.close()


def _http_client(answer: bytes, close: bool = False) -> tuple:
    """What the sender did with http.client before workers.http1."""
    ours, theirs = socket.socketpair()
    ours.settimeout(2)
    theirs.sendall(answer)
    if close:
        theirs.shutdown(socket.SHUT_WR)
    conn = http.client.HTTPConnection("hooks.example", 80)
    conn.sock = ours
    try:
        conn.request("POST", "/hook", body=b"{}", headers={"X-A": "1"})
        resp = conn.getresponse()
        kept = resp.read(KEEP)
        reusable = not resp.will_close
        if not resp.isclosed():
            resp.read(DRAIN)
            reusable = reusable and resp.isclosed()
        if resp.isclosed() and resp.length:
            raise http.client.IncompleteRead(kept, resp.length)
        return resp.status, kept, resp.getheader("Retry-After"), reusable
    except (OSError, http.client.HTTPException) as exc:
        return type(exc)
    finally:
        conn.close()
        theirs.close()


LONG = b"x" * (KEEP + DRAIN + 1)
SAME_AS_HTTP_CLIENT = {
    "sized": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    "sized, header case and spacing": (b"HTTP/1.1 201 Created\r\ncontent-LENGTH:2 \r\n\r\nok",
                                       False),
    "empty 200": (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    "bare LF line ends": (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", False),
    "kept body cut at KEEP, rest drained": (
        b"HTTP/1.1 500 Oops\r\nContent-Length: 40\r\n\r\n" + b"e" * 40, False),
    "longer than KEEP + DRAIN": (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(LONG) + LONG, False),
    "connection close": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                         True),
    "connection keep-alive, close": (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok", True),
    "HTTP/1.0": (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
    "HTTP/1.0 keep-alive": (
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", False),
    "until close": (b"HTTP/1.1 200 OK\r\n\r\nall of it", True),
    "until close, long": (b"HTTP/1.1 200 OK\r\n\r\n" + LONG, True),
    "bad length means until close": (b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok", True),
    "negative length means until close": (
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok", True),
    "chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n", False),
    "chunked, length ignored": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n", False),
    "chunked, kept body cut": (b"HTTP/1.1 400 No\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", False),
    "chunked, longer than KEEP + DRAIN": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"10\r\n" + b"c" * 16 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n", False),
    "chunked, one chunk longer than KEEP + DRAIN": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"d" * 100
        + b"\r\n0\r\n\r\n", False),
    "chunked, cut short": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc",
                           True),
    "chunked, bad size": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n",
                          True),
    "chunked, negative size": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nok\r\n0\r\n\r\n", True),
    "sized, cut short": (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", True),
    "no answer": (b"", True),
    "not HTTP": (b"SSH-2.0-OpenSSH_9.2\r\n", True),
    "status not a number": (b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", True),
    "status with a superscript digit": (b"HTTP/1.1 2\xb20 OK\r\nContent-Length: 0\r\n\r\n", True),
    "a length folded into another header": (
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n Content-Length: 2\r\n\r\nok", True),
    "HTTP/2 status line": (b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", True),
    "100 continue first": (b"HTTP/1.1 100 Continue\r\n\r\n"
                           b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok", False),
    "204": (b"HTTP/1.1 204 No Content\r\n\r\n", False),
    "304 with a length": (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", False),
    "retry after": (b"HTTP/1.1 429 Slow\r\nretry-after: 120\r\nContent-Length: 0\r\n\r\n", False),
    "folded header": (b"HTTP/1.1 503 Busy\r\nX-Long: a\r\n b\r\nRetry-After: 7\r\n"
                      b"Content-Length: 0\r\n\r\n", False),
    "header line too long": (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", True),
    "too many headers": (b"HTTP/1.1 200 OK\r\n" + b"X-H: 1\r\n" * 101 + b"\r\n", True),
}


@pytest.mark.parametrize("answer,close", SAME_AS_HTTP_CLIENT.values(), ids=SAME_AS_HTTP_CLIENT)
def test_answers_are_read_as_http_client_read_them(answer, close):
    expected = _http_client(answer, close)
    assert _ours(answer, close) == expected


def test_the_cases_cover_every_outcome():
    outcomes = {_http_client(a, c) if isinstance(_http_client(a, c), type) else "answer"
                for a, c in SAME_AS_HTTP_CLIENT.values()}
    assert {"answer", http.client.IncompleteRead, http.client.RemoteDisconnected,
            http.client.BadStatusLine, http.client.UnknownProtocol,
            http.client.LineTooLong, http.client.HTTPException} <= outcomes


def test_other_interim_answers_are_skipped_too():
    # http.client takes a 103 Early Hints for the answer; it is not one (RFC 9110 15.2).
    answer = (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert _ours(answer) == (200, b"ok", None, True)


def test_an_answer_cut_short_is_no_answer_however_much_of_it_came():
    # http.client noticed the cut only when it fell within the first read.
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n" + b"z" * 30
    assert _http_client(answer, close=True) == (200, b"z" * KEEP, None, False)
    assert _ours(answer, close=True) is http.client.IncompleteRead


STRAY = b"HTTP/1.1 500 Stale\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("answer,expected", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", (200, b"ok", None, False)),
    (b"HTTP/1.1 204 No Content\r\n\r\n", (204, b"", None, False)),
    # A framework bug seen in the wild: a 204 with a chunked body.
    (b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     (204, b"", None, False)),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\nok", (304, b"", None, False)),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
     (200, b"ok", None, False)),
], ids=["sized", "204", "204 with a chunked body", "304 with a body", "chunked"])
def test_bytes_beyond_the_answer_make_the_connection_unusable(answer, expected):
    # http.client dropped them with its per-answer buffer; here the next request
    # on this connection would read them as its own answer (a stale 500, or a
    # stale 200 for a delivery that failed).
    assert _ours(answer + STRAY) == expected


def test_a_repeated_transfer_encoding_is_read_whole():
    # http.client reads only the first; the framing is the last coding (RFC 9112 6.3).
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"
              b"\r\nsome body")
    assert _ours(answer, close=True) == (200, b"some body", None, False)


def test_a_repeated_retry_after_is_joined_as_http_client_joins_it():
    answer = b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nRetry-After: 9\r\nContent-Length: 0\r\n\r\n"
    assert _ours(answer) == _http_client(answer) == (503, b"", "7, 9", True)


def test_a_non_ascii_path_is_refused_as_http_client_refused_it():
    conn, theirs = connection(b"", False)
    with pytest.raises(UnicodeEncodeError):
        conn.post("/caf\u00e9", b"{}", [], KEEP, DRAIN)
    reference = http.client.HTTPConnection("hooks.example", 80)
    with pytest.raises(UnicodeEncodeError):
        reference.putrequest("POST", "/caf\u00e9")
    conn.close()
    theirs.close()


def test_a_host_with_control_characters_is_refused():
    with pytest.raises(http.client.InvalidURL):
        http1.Connection("exa\x0bmple.com", 80, 1.0, lambda address, timeout: None)
    with pytest.raises(http.client.InvalidURL):
        http.client.HTTPConnection("exa\x0bmple.com", 80)


def test_the_request_is_one_post_with_the_body_and_headers():
    conn, theirs = connection(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 2, False)
    for body in (b'{"a":1}', b"[]"):
        conn.post("/hook?x=1", body, [("Content-Type", "application/json")], KEEP, DRAIN)
    theirs.settimeout(2)
    sent = b""
    while sent.count(b"\r\n\r\n") < 2 or not sent.endswith(b"[]"):
        sent += theirs.recv(4096)
    assert sent == (b"POST /hook?x=1 HTTP/1.1\r\nHost: hooks.example\r\n"
                    b"Accept-Encoding: identity\r\nContent-Length: 7\r\n"
                    b"Content-Type: application/json\r\n\r\n{\"a\":1}"
                    b"POST /hook?x=1 HTTP/1.1\r\nHost: hooks.example\r\n"
                    b"Accept-Encoding: identity\r\nContent-Length: 2\r\n"
                    b"Content-Type: application/json\r\n\r\n[]")
    conn.close()
    theirs.close()


@pytest.mark.parametrize("host,port,tls,expected", [
    ("hooks.example", 8080, False, "hooks.example:8080"),
    ("hooks.example", 443, True, "hooks.example"),
    ("hooks.example", 443, False, "hooks.example:443"),
    ("::1", 80, False, "[::1]"),
    ("bücher.example", 80, False, "xn--bcher-kva.example"),
])
def test_the_host_header_names_the_origin_as_http_client_does(host, port, tls, expected):
    assert http1._host_header(host, port, 443 if tls else 80) == expected
    reference = http.client.HTTPConnection(host, port)
    reference.default_port = 443 if tls else 80
    reference._buffer = []
    reference.putrequest("POST", "/")
    assert f"Host: {expected}".encode() in reference._buffer


@pytest.mark.parametrize("target", ["/a b", "/a\r\nX-Injected: 1", "/\x00", "/\x7f"])
def test_control_characters_in_the_target_are_refused_before_sending(target):
    conn, theirs = connection(b"", False)
    with pytest.raises(http.client.InvalidURL):
        conn.post(target, b"{}", [], KEEP, DRAIN)
    assert conn.sock is None  # nothing was opened, nothing sent
    theirs.close()
