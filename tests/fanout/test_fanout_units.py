"""Fan-out building blocks without a database: signing, the address guard,
Retry-After, settings."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared import config, netguard, signing
from shared.db.outbox import attempts, claims
from shared.notifications import Notification, payload
from tests.fanout.fanout_helpers import sample_event
from workers import attempt, http1


def test_secrets_are_standard_webhooks_secrets():
    secret = signing.new_secret()
    assert secret.startswith("whsec_") and len(secret) > 30
    assert secret != signing.new_secret()


def test_signature_verifies_with_the_standardwebhooks_package():
    secret, stamp, body = signing.new_secret(), int(datetime.now(UTC).timestamp()), b'{"a":1}'
    headers = signing.headers([secret], "msg_1", stamp, body)
    assert Webhook(secret).verify(body, headers) == {"a": 1}
    tampered = dict(headers, **{"webhook-id": "msg_2"})
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, tampered)


def test_both_secrets_sign_during_a_rotation_then_only_the_new_one():
    old, new = signing.new_secret(), signing.new_secret()
    now = datetime.now(UTC)
    both = signing.active_secrets(new, old, now + timedelta(hours=1), now)
    assert both == [new, old]
    assert signing.active_secrets(new, old, now - timedelta(seconds=1), now) == [new]
    body, stamp = b"{}", int(now.timestamp())
    headers = signing.headers(both, "msg_x", stamp, body)
    assert headers["webhook-signature"].count("v1,") == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


@pytest.mark.parametrize("address,why", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"),
    ("192.168.0.1", "private"), ("172.16.5.4", "private"), ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"), ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"),
    ("240.0.0.1", "reserved"), ("100.64.0.1", "not a public address"),
    ("::ffff:127.0.0.1", "loopback"), ("fc00::1", "private"),
])
def test_non_public_addresses_are_refused_with_the_reason(address, why):
    refusal = netguard.address_refusal(ipaddress.ip_address(address))
    assert refusal is not None and why in refusal


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_pass(address):
    assert netguard.address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("url,why", [
    ("ftp://example.com/x", "scheme"), ("example.com/hook", "scheme"), ("http:///x", "no host"),
    ("https://user:pw@example.com/", "credentials"), ("http://127.0.0.1:8000/x", "loopback"),
    ("http://localhost/x", "loopback"), ("http://10.0.0.8/x", "private"),
    ("http://[::1]:9/x", "loopback"), ("http://no-such-host.invalid/x", "does not resolve"),
])
def test_url_check_says_why(url, why):
    with pytest.raises(netguard.UnsafeURL, match=why):
        netguard.check_url(url, allow_private=False)


def test_the_guard_can_be_lifted_for_private_addresses_only():
    assert netguard.check_url("http://127.0.0.1:9/x", allow_private=True)
    with pytest.raises(netguard.UnsafeURL, match="scheme"):
        netguard.check_url("file:///etc/passwd", allow_private=True)


def _listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def _attempt_with(server: socket.socket, serve, allow_private: bool) -> attempts.Result:
    """One attempt at ``server`` while ``serve`` plays its side in a thread."""
    t = threading.Thread(target=serve)
    t.start()
    pools = attempt.Pools(timeout=2, allow_private=allow_private, keep=2)
    claimed = claims.Claimed("msg_1", "ep_1", f"http://127.0.0.1:{server.getsockname()[1]}/",
                                 b"{}", [signing.new_secret()], token=None)
    try:
        return attempt.attempt(claimed, pools, 60)
    finally:
        t.join()
        server.close()
        pools.close()


def test_send_time_guard_refuses_before_connecting():
    server = _listener()
    accepted: list[object] = []
    server.settimeout(0.5)
    result = _attempt_with(server, lambda: accepted.append(_accept(server)), allow_private=False)
    assert not result.ok and result.error.startswith("refused:") and "loopback" in result.error
    assert accepted == [None]  # no connection was ever opened


def _accept(server: socket.socket):
    try:
        conn, _ = server.accept()
        conn.close()
        return "connected"
    except TimeoutError:
        return None


def _slow_resolver(monkeypatch, seconds: float) -> None:
    """A name server that answers after ``seconds`` (with a loopback address)."""
    real = socket.getaddrinfo

    def slow(host, port, *args, **kwargs):
        time.sleep(seconds)
        return real("127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(netguard.socket, "getaddrinfo", slow)


def test_a_slow_resolver_cannot_hold_a_send_past_the_delivery_timeout(monkeypatch):
    # Past its timeout a send can outlive its claim, and the delivery goes twice.
    _slow_resolver(monkeypatch, 3)
    pools = attempt.Pools(timeout=0.3, allow_private=True, keep=2)
    claimed = claims.Claimed("msg_1", "ep_1", "http://hooks.example/", b"{}",
                                 [signing.new_secret()], token=None)
    started = time.monotonic()
    result = attempt.attempt(claimed, pools, 60)
    assert time.monotonic() - started < 1.5
    assert not result.ok and result.error == "timed out after 0.3s"


def test_lookups_left_behind_are_bounded(monkeypatch):
    _slow_resolver(monkeypatch, 1)
    monkeypatch.setattr(netguard, "_lookups", threading.BoundedSemaphore(1))
    with pytest.raises(TimeoutError, match="did not resolve"):
        netguard.resolve("hooks.example", 80, 0.1)
    # The first lookup still holds the only slot: no second thread is started.
    with pytest.raises(TimeoutError, match="lookups are still running"):
        netguard.resolve("hooks.example", 80, 0.1)


def test_saving_an_endpoint_waits_for_its_name_a_bounded_time(monkeypatch):
    _slow_resolver(monkeypatch, 3)
    monkeypatch.setattr(netguard, "CHECK_RESOLVE_SECONDS", 0.2)
    with pytest.raises(netguard.UnsafeURL, match=r"did not resolve within 0\.2s"):
        netguard.check_url("http://hooks.example/", allow_private=True)


def _stalled_listener() -> tuple[socket.socket, socket.socket]:
    """A listener whose accept queue is full, and the connection filling it:
    connecting to it hangs, as to a host that drops packets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    return server, socket.create_connection(server.getsockname())


def test_connecting_to_every_address_of_a_host_fits_in_one_timeout(monkeypatch):
    server, queued = _stalled_listener()
    port = server.getsockname()[1]
    addresses = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))] * 4
    monkeypatch.setattr(netguard.socket, "getaddrinfo", lambda *a, **k: addresses)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        netguard.create_connection(("four.example", port), 0.4, allow_private=True)
    took = time.monotonic() - started
    queued.close()
    server.close()
    assert took < 0.9  # not 4 x 0.4 s


def test_an_address_that_drops_packets_leaves_time_for_the_next(monkeypatch):
    stalled, queued = _stalled_listener()
    server = _listener()
    addresses = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", a)
                 for a in (stalled.getsockname(), server.getsockname())]
    monkeypatch.setattr(netguard.socket, "getaddrinfo", lambda *a, **k: addresses)
    started = time.monotonic()
    sock = netguard.create_connection(("two.example", 0), 1.0, allow_private=True)
    assert sock.getpeername() == server.getsockname()
    assert time.monotonic() - started < 1.0
    for s in (sock, queued, stalled, server):
        s.close()


def test_a_connected_socket_keeps_the_whole_timeout_for_each_read():
    server = _listener()
    port = server.getsockname()[1]
    sock = netguard.create_connection(("127.0.0.1", port), 2.5, allow_private=True)
    assert sock.gettimeout() == 2.5
    sock.close()
    server.close()


def _handed_over_to_tls() -> socket.socket:
    sock = socket.socket()
    sock.detach()  # a socket handed over to TLS: no descriptor
    return sock


@pytest.mark.parametrize("connecting", [lambda: None, _handed_over_to_tls],
                         ids=["no socket yet", "socket taken over by TLS"])
def test_the_watchdog_shuts_an_attempt_that_was_still_connecting_at_its_deadline(connecting):
    watchdog = attempt.Watchdog(interval=0.02)
    conn = http1.Connection("127.0.0.1", 9, 1.0, netguard.create_connection)
    conn.sock = connecting()
    ticket = watchdog.watch(conn, time.monotonic())
    time.sleep(0.1)  # the deadline has passed while there was nothing to shut
    ours, theirs = socket.socketpair()
    conn.sock = ours
    time.sleep(0.1)
    theirs.settimeout(1)
    assert theirs.recv(1) == b""  # shut down: the attempt cannot go on past its deadline
    assert watchdog.unwatch(ticket)
    watchdog.stop()
    ours.close()
    theirs.close()


def _self_signed(tmp_path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hookline test")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def test_https_deliveries_shake_hands_and_verify_the_certificate(tmp_path, monkeypatch):
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/hook"
    claimed = claims.Claimed("msg_1", "ep_1", url, b"{}", [signing.new_secret()], token=None)
    try:
        # Not trusted yet: the default context refuses the self-signed certificate.
        refused = attempt.attempt(claimed, attempt.Pools(timeout=2, allow_private=True, keep=2), 60)
        assert not refused.ok and "CERTIFICATE_VERIFY_FAILED" in refused.error
        trusting = ssl.create_default_context(cafile=cert)
        monkeypatch.setattr(attempt, "_ssl_context", trusting)
        assert attempt.attempt(claimed, attempt.Pools(timeout=2, allow_private=True, keep=2),
                              60).ok
    finally:
        server.shutdown()
        server.server_close()


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_kept_connection_gets_the_whole_timeout_back(receiver):
    pools = attempt.Pools(timeout=2.5, allow_private=True, keep=2)
    claimed = claims.Claimed("msg_1", "ep_1", receiver.url("/a"), b"{}",
                                 [signing.new_secret()], token=None)
    assert attempt.attempt(claimed, pools, 60).ok
    [(conn, _)] = pools.get("ep_1", "http", "127.0.0.1", receiver.port)._idle
    # It was opened with what was left of the attempt's 2.5 s.
    assert conn.timeout == 2.5 and conn.sock.gettimeout() == 2.5
    pools.close()


@pytest.mark.parametrize("value,expected", [
    ("5", 5.0), ("0", 1.0), ("99999", 3600.0), ("soon", None), (None, None), ("2.5", 2.5),
    ("nan", None), ("inf", None), ("-inf", None),  # PostgreSQL's intervals refuse NaN
])
def test_retry_after_is_bounded(value, expected):
    assert attempt.retry_after_seconds(value, 3600.0) == expected


def test_a_nul_in_a_bad_status_line_is_not_carried_into_the_error():
    server = _listener()

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 2\x0000 OK\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    result = _attempt_with(server, answer, allow_private=True)
    assert not result.ok and result.error.startswith("BadStatusLine")
    assert "\x00" not in result.error and "\ufffd" in result.error


def test_retry_after_as_an_http_date():
    when = datetime.now(UTC) + timedelta(seconds=120)
    got = attempt.retry_after_seconds(format_datetime(when, usegmt=True), 3600.0)
    assert 110 <= got <= 121


def test_payload_is_type_timestamp_and_the_normalised_event():
    note = Notification(42, "subscription.opted_out", sample_event())
    doc = payload(note)
    assert doc["type"] == "subscription.opted_out"
    assert doc["timestamp"] == "2025-06-16T13:46:38+00:00"
    assert doc["data"]["event_id"] == 42 and doc["data"]["type"] == "message.read"
    assert doc["data"]["message_id"] == "m1"


@pytest.mark.parametrize("env,name", [
    ({"HOOKLINE_ENDPOINT_DISABLE_AFTER_DAYS": "soon"}, "HOOKLINE_ENDPOINT_DISABLE_AFTER_DAYS"),
    ({"HOOKLINE_ENDPOINT_CONCURRENCY": "0"}, "HOOKLINE_ENDPOINT_CONCURRENCY"),
    ({"HOOKLINE_ENDPOINT_CONCURRENCY": "40", "HOOKLINE_DELIVERY_THREADS": "8"},
     "HOOKLINE_ENDPOINT_CONCURRENCY"),
    ({"HOOKLINE_DELIVERY_TIMEOUT": "600"}, "HOOKLINE_DELIVERY_TIMEOUT"),
    ({"HOOKLINE_BREAKER_FAILURES": "x"}, "HOOKLINE_BREAKER_FAILURES"),
    ({"HOOKLINE_MAX_RETRY_AFTER": "0"}, "HOOKLINE_MAX_RETRY_AFTER"),
])
def test_bad_fanout_settings_fail_naming_the_variable(env, name):
    with pytest.raises(config.ConfigError, match=name):
        config.load(env)


def test_fanout_defaults():
    s = config.load({})
    assert s.endpoint_disable_after_days == 5 and s.delivery_timeout == 10
    assert s.endpoint_concurrency < s.delivery_threads
    assert config.load({"HOOKLINE_ENDPOINT_DISABLE_AFTER_DAYS": "2"}).endpoint_disable_after_days \
        == 2
