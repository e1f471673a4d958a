"""Configuration from the environment. Bad values fail at start, naming the variable."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from shared import redis_urls
from shared.inbox_shards import MAX_SHARDS


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names the variable."""


Number = TypeVar("Number", int, float)


def _set(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value, None when it is unset or blank (blank means the default)."""
    raw = env.get(name)
    return None if raw is None or raw.strip() == "" else raw


def _bounded(name: str, value: Number, minimum: Number, maximum: Number | None = None) -> Number:
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def _number(env: Mapping[str, str], name: str, parse: Callable[[str], Number],
            kind: str) -> Number | None:
    """The variable as ``parse`` reads it (``kind`` names what it must be), None when it
    is unset or blank."""
    raw = _set(env, name)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None


_WHOLE_DAYS = re.compile(r"^\s*(\d+)\s*(?:d|days?)?\s*$")


def load_retention_days(env: Mapping[str, str]) -> int:
    """HOOKLINE_RETENTION_DAYS alone (migrate needs it without the whole Settings)."""
    return _int(env, "HOOKLINE_RETENTION_DAYS", 30)


def partition_interval(env: Mapping[str, str]) -> int:
    """HOOKLINE_PARTITION_INTERVAL in whole days: day (the default), week, N days, Nd."""
    raw = _set(env, "HOOKLINE_PARTITION_INTERVAL")
    word = "day" if raw is None else raw.strip().lower()
    named = {"day": 1, "daily": 1, "week": 7, "weekly": 7}
    if word in named:
        return named[word]
    match = _WHOLE_DAYS.match(word)
    if not match or int(match.group(1)) < 1:
        raise ConfigError("HOOKLINE_PARTITION_INTERVAL must be day, week or a whole number "
                          f"of days, got {raw!r}")
    return int(match.group(1))


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int | None = None
) -> int:
    value = _number(env, name, int, "an integer")
    return default if value is None else _bounded(name, value, minimum, maximum)


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    value = _number(env, name, float, "a number")
    return default if value is None else _bounded(name, value, minimum)


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = _set(env, name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _words(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    words = tuple(w.strip().upper() for w in raw.split(",") if w.strip())
    if not words:
        raise ConfigError(f"{name} must list at least one comma-separated word")
    return words


def _schedule(env: Mapping[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = _set(env, name)
    if raw is None:
        return default
    try:
        values = tuple(float(v) for v in raw.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated seconds, got {raw!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"{name} must list positive seconds, got {raw!r}")
    return values


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    if not raw.startswith(schemes):
        raise ConfigError(f"{name} must start with one of {', '.join(schemes)}, got {raw!r}")
    return raw.strip()


# Variables that hold a secret (or a URL that may carry a password): each may instead be
# given as X_FILE, the path of a file that holds it (Docker and Kubernetes secrets).
SECRET_VARIABLES = (
    "DATABASE_URL", "REDIS_URL", "HOOKLINE_BROKER_URL", "HOOKLINE_API_TOKEN",
    "HOOKLINE_CALLBACK_TOKEN", "HOOKLINE_SECRET_KEY", "HOOKLINE_SECRET_KEYS",
    "HOOKLINE_CONSOLE_SESSION_KEY", "HOOKLINE_CONSOLE_USERS", "HOOKLINE_FLOWER_BASIC_AUTH",
)
# ... and every per-source one: HOOKLINE_CALLBACK_TOKEN_<SOURCE>_FILE and so on.
SECRET_PREFIXES = ("HOOKLINE_CALLBACK_TOKEN_", "HOOKLINE_SIGNATURE_SECRET_",
                   "HOOKLINE_VERIFY_KEY_")
FILE_SUFFIX = "_FILE"


def _is_secret(name: str) -> bool:
    return name in SECRET_VARIABLES or name.startswith(SECRET_PREFIXES)


def with_files(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with each secret's X_FILE replaced by X, read from that file (one
    trailing newline dropped: ``echo`` and most editors end a file with one). X and
    X_FILE both set is an error: which one wins would be a guess."""
    out = dict(env)
    for key, path in env.items():
        base = key[: -len(FILE_SUFFIX)]
        if not key.endswith(FILE_SUFFIX) or not _is_secret(base):
            continue
        del out[key]
        if path.strip() == "":
            continue
        if _set(env, base) is not None:
            raise ConfigError(f"{base} and {key} are both set: set one of them (the value, "
                              "or the path of a file that holds it)")
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{key}: cannot read {path!r}: {exc}") from None
        value = value[:-2] if value.endswith("\r\n") else value.removesuffix("\n")
        if value.strip() == "":
            raise ConfigError(f"{key}: {path!r} is empty")
        out[base] = value
    return out


def secret(env: Mapping[str, str], name: str) -> str | None:
    """One secret variable read directly (X or X_FILE), for a command that needs only it."""
    return _set(with_files({k: v for k, v in env.items()
                            if k in (name, name + FILE_SUFFIX)}), name)


MIN_KEY_CHARS = 16


def _secret_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """HOOKLINE_SECRET_KEYS (newest first, comma-separated), or HOOKLINE_SECRET_KEY as a
    ring of one."""
    ring, one = _set(env, "HOOKLINE_SECRET_KEYS"), _set(env, "HOOKLINE_SECRET_KEY")
    if ring is not None and one is not None:
        raise ConfigError("HOOKLINE_SECRET_KEYS and HOOKLINE_SECRET_KEY are both set: put "
                          "every key in HOOKLINE_SECRET_KEYS, newest first")
    if ring is None:
        name, keys = "HOOKLINE_SECRET_KEY", (() if one is None else (one,))
    else:
        name, keys = "HOOKLINE_SECRET_KEYS", tuple(k.strip() for k in ring.split(","))
    for i, key in enumerate(keys):
        if len(key) < MIN_KEY_CHARS:
            where = f" (key {i + 1})" if len(keys) > 1 else ""
            raise ConfigError(f"{name} must be at least {MIN_KEY_CHARS} characters{where}")
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{name} lists a key twice")
    return keys


def _session_key(env: Mapping[str, str]) -> str | None:
    raw = _set(env, "HOOKLINE_CONSOLE_SESSION_KEY")
    if raw is not None and len(raw) < MIN_KEY_CHARS:
        raise ConfigError(f"HOOKLINE_CONSOLE_SESSION_KEY must be at least {MIN_KEY_CHARS} "
                          "characters")
    return raw


# Who a sign-in with HOOKLINE_API_TOKEN is, in the console: no user may take the name.
CONSOLE_TOKEN_USER = "api-token"
# Hash formats werkzeug.security.generate_password_hash makes (method$salt$hash).
_PASSWORD_METHODS = ("scrypt", "pbkdf2")


def _console_users(env: Mapping[str, str]) -> dict[str, str]:
    """HOOKLINE_CONSOLE_USERS: ``name:hash,name:hash``; a hash is werkzeug's
    ``method:params$salt$digest`` (its first ``:`` belongs to the hash)."""
    raw = env.get("HOOKLINE_CONSOLE_USERS", "")
    users: dict[str, str] = {}
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        name, _, hashed = entry.partition(":")
        method = hashed.split(":", 1)[0].split("$", 1)[0]
        if not name.strip() or method not in _PASSWORD_METHODS or hashed.count("$") != 2:
            raise ConfigError("HOOKLINE_CONSOLE_USERS must be name:hash pairs separated by "
                              "commas, each hash from werkzeug's generate_password_hash "
                              f"(scrypt or pbkdf2); got an entry for {name.strip()!r}")
        if name.strip() in users:
            raise ConfigError(f"HOOKLINE_CONSOLE_USERS names {name.strip()!r} twice")
        if name.strip() == CONSOLE_TOKEN_USER:
            raise ConfigError(f"HOOKLINE_CONSOLE_USERS cannot name {CONSOLE_TOKEN_USER!r}: "
                              "the console's name for a sign-in with the API token")
        users[name.strip()] = hashed
    return users


def source_env_suffix(source: str) -> str:
    """'kaleyra-rcs' -> 'KALEYRA_RCS', as used by per-source variables."""
    return source.upper().replace("-", "_")


def _per_source(env: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {
        key[len(prefix):]: value
        for key, value in env.items()
        if key.startswith(prefix) and value != ""
    }


def _per_source_ints(env: Mapping[str, str], prefix: str) -> dict[str, int]:
    return {suffix: _int(env, prefix + suffix, 1) for suffix in _per_source(env, prefix)}


def _networks(env: Mapping[str, str], prefix: str) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for suffix, raw in _per_source(env, prefix).items():
        try:
            out[suffix] = tuple(
                ipaddress.ip_network(part.strip(), strict=False)
                for part in raw.split(",") if part.strip()
            )
        except ValueError as exc:
            raise ConfigError(f"{prefix}{suffix} must list CIDR ranges: {exc}") from None
    return out


SIGNATURE_PREFIX = "HOOKLINE_SIGNATURE_"
SIGNATURE_ALGORITHMS = ("sha1", "sha256")
SIGNATURE_ENCODINGS = ("hex", "base64")


@dataclass(frozen=True)
class SignatureSpec:
    """How one source signs its callbacks: HMAC of the raw body (ingest.signatures)."""

    header: str
    algorithm: str
    encoding: str
    secret: str = field(repr=False)  # never in a repr, a log line or a traceback


def _signatures(env: Mapping[str, str]) -> dict[str, SignatureSpec]:
    """HOOKLINE_SIGNATURE_{SECRET,HEADER,ALGORITHM,ENCODING}_<SOURCE>; the secret turns
    the check on, and a setting for a source hookline does not know is an error (a
    typo must not silently leave a source unsigned)."""
    parts: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        if not key.startswith(SIGNATURE_PREFIX) or value.strip() == "":
            continue
        kind, _, suffix = key[len(SIGNATURE_PREFIX):].partition("_")
        if kind not in ("SECRET", "HEADER", "ALGORITHM", "ENCODING") or not suffix:
            raise ConfigError(f"{key} is not a signature setting; use "
                              f"{SIGNATURE_PREFIX}{{SECRET,HEADER,ALGORITHM,ENCODING}}_<SOURCE>")
        parts.setdefault(suffix, {})[kind] = value.strip()
    if not parts:
        return {}
    # Imported here, not at the top: loading the provider schemas costs 160-370 ms
    # (measured after shared.config, 7 Dec), paid only when signature settings exist.
    from shared.providers import SOURCES

    known = {source_env_suffix(s) for s in SOURCES}
    return {suffix: _signature(suffix, given, known) for suffix, given in parts.items()}


def _signature(suffix: str, given: dict[str, str], known: set[str]) -> SignatureSpec:
    name = f"{SIGNATURE_PREFIX}{{}}_{suffix}"
    if suffix not in known:
        raise ConfigError(f"{name.format('SECRET')}: unknown source {suffix!r}; "
                          f"known: {', '.join(sorted(known))}")
    if "SECRET" not in given:
        raise ConfigError(f"{name.format(next(iter(given)))} is set but "
                          f"{name.format('SECRET')} is not")
    if "HEADER" not in given:
        raise ConfigError(f"{name.format('HEADER')} must name the header that carries the "
                          f"signature when {name.format('SECRET')} is set")
    algorithm = given.get("ALGORITHM", "sha256").lower()
    if algorithm not in SIGNATURE_ALGORITHMS:
        raise ConfigError(f"{name.format('ALGORITHM')} must be sha1 or sha256, "
                          f"got {given['ALGORITHM']!r}")
    encoding = given.get("ENCODING", "hex").lower()
    if encoding not in SIGNATURE_ENCODINGS:
        raise ConfigError(f"{name.format('ENCODING')} must be hex or base64, "
                          f"got {given['ENCODING']!r}")
    return SignatureSpec(given["HEADER"], algorithm, encoding, given["SECRET"])


# Ten times the default. A larger batch makes one long transaction and a long list of
# envelopes that a lost lease sends back to be redone.
MAX_BATCH_SIZE = 5000
# Defaults of the outbound retry schedule, in seconds: 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 14 h, 20 h, 24 h (about three days in all).
DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


@dataclass(frozen=True)
class Settings:
    # Secrets (and URLs, which may carry passwords) stay out of repr(): a settings
    # object in a log line or a traceback must not leak them.
    database_url: str | None = field(default=None, repr=False)
    redis_url: str | None = field(default=None, repr=False)
    broker_url: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    # Encrypts endpoint signing secrets at rest (shared.secretbox): the ring, newest
    # first (new secrets are sealed under it), and that newest key alone.
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    secret_key: str | None = field(default=None, repr=False)
    # Signs the console's session cookie (ingest.console.auth); else derived from the ring.
    console_session_key: str | None = field(default=None, repr=False)
    callback_token: str | None = field(default=None, repr=False)
    # Per-source overrides, keyed by source_env_suffix(source).
    callback_tokens: dict[str, str] = field(default_factory=dict, repr=False)
    # Callback signatures, keyed by source_env_suffix(source).
    signatures: dict[str, SignatureSpec] = field(default_factory=dict)
    max_body_bytes: int = 262144
    batch_size: int = 500
    # A leased batch stops short of this many bytes (its oldest envelope always
    # goes): parsed, a batch takes many times its bytes of worker memory.
    batch_bytes: int = 2 * 1024 * 1024
    lease_seconds: int = 60
    max_attempts: int = 3
    db_pool_size: int = 4
    opt_in_keywords: tuple[str, ...] = ("START", "SUBSCRIBE")
    opt_out_keywords: tuple[str, ...] = ("STOP", "UNSUBSCRIBE")
    trusted_proxy_hops: int = 0
    allowed_networks: dict[str, tuple] = field(default_factory=dict)
    # Set explicitly, HOOKLINE_MAX_BODY_BYTES is every source's limit; left at its
    # default, a provider that documents larger bodies gets its own default.
    max_body_bytes_set: bool = False
    # HOOKLINE_MAX_BODY_BYTES_<SOURCE>: a source's own limit, over either.
    max_body_bytes_by_source: dict[str, int] = field(default_factory=dict)
    # HOOKLINE_VERIFY_KEY_<SOURCE>: the key a provider's URL-verification request carries.
    verify_keys: dict[str, str] = field(default_factory=dict, repr=False)
    allow_private_endpoints: bool = False
    # Lets `hookline ingest` start with sources that have no credential at all.
    callbacks_open: bool = False
    delivery_timeout: float = 10.0
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    retention_days: int = 30
    partition_interval_days: int = 1
    log_format: str = "json"
    # Fan-out (see docs/fanout.md).
    endpoint_disable_after_days: float = 5.0
    endpoint_concurrency: int = 8
    delivery_threads: int = 32
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    max_retry_after: float = 3600.0
    # The inbox (see shared/inbox_shards.py and docs/operations.md).
    inbox_shards: int = 1
    # A 202 waits until this many replicas hold the envelope (Redis WAIT), else 503.
    inbox_wait_replicas: int = 0
    inbox_wait_timeout_ms: int = 500
    # The operator console (/console; ingest.console).
    console_enabled: bool = True
    console_users: dict[str, str] = field(default_factory=dict, repr=False)
    # The console cookie is Secure unless this is off (`hookline dev`, plain http).
    console_secure_cookie: bool = True

    def callback_token_for(self, source: str) -> str | None:
        return self.callback_tokens.get(source_env_suffix(source), self.callback_token)

    def signature_for(self, source: str) -> SignatureSpec | None:
        return self.signatures.get(source_env_suffix(source))

    def require_database(self) -> str:
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set (hookline dev starts an embedded one)")
        return self.database_url

    def require_redis(self) -> str:
        if not self.redis_url:
            raise ConfigError("REDIS_URL is not set (hookline dev starts an embedded one)")
        return self.redis_url


# A delivery attempt must end far inside the sender's claim lease and task limits.
MAX_DELIVERY_TIMEOUT = 60.0


def _fanout(env: Mapping[str, str]) -> dict:
    out = dict(
        endpoint_disable_after_days=_float(env, "HOOKLINE_ENDPOINT_DISABLE_AFTER_DAYS", 5.0,
                                           minimum=0.0001),
        endpoint_concurrency=_int(env, "HOOKLINE_ENDPOINT_CONCURRENCY", 8),
        delivery_threads=_int(env, "HOOKLINE_DELIVERY_THREADS", 32, minimum=2),
        breaker_failures=_int(env, "HOOKLINE_BREAKER_FAILURES", 5),
        breaker_cooldown=_float(env, "HOOKLINE_BREAKER_COOLDOWN", 30.0, minimum=0.1),
        max_retry_after=_float(env, "HOOKLINE_MAX_RETRY_AFTER", 3600.0, minimum=1.0),
    )
    if out["endpoint_concurrency"] >= out["delivery_threads"]:
        # Otherwise one slow endpoint could hold every sending thread.
        raise ConfigError("HOOKLINE_ENDPOINT_CONCURRENCY must be below HOOKLINE_DELIVERY_THREADS")
    timeout = _float(env, "HOOKLINE_DELIVERY_TIMEOUT", 10.0, minimum=0.1)
    if timeout > MAX_DELIVERY_TIMEOUT:
        raise ConfigError(f"HOOKLINE_DELIVERY_TIMEOUT must be at most {MAX_DELIVERY_TIMEOUT:g}")
    return out


REDIS_SCHEMES = ("redis://", "rediss://", "unix://", *redis_urls.CLUSTER_SCHEMES,
                 *redis_urls.SENTINEL_SCHEMES)
BROKER_SCHEMES = ("redis://", "rediss://", "redis+socket://", "amqp://",
                  *redis_urls.SENTINEL_SCHEMES)


def _redis_urls(env: Mapping[str, str]) -> dict:
    redis_url = _url(env, "REDIS_URL", REDIS_SCHEMES)
    broker = env.get("HOOKLINE_BROKER_URL", "")
    if redis_urls.is_cluster(broker):
        raise ConfigError("HOOKLINE_BROKER_URL cannot be a Redis Cluster: Celery's Redis "
                          "broker does not support one; use redis://, redis+sentinel:// "
                          "or amqp://")
    broker_url = _url(env, "HOOKLINE_BROKER_URL", BROKER_SCHEMES)
    if redis_url and redis_urls.is_cluster(redis_url) and not broker_url:
        raise ConfigError("REDIS_URL names a Redis Cluster, which Celery cannot use as its "
                          "broker: set HOOKLINE_BROKER_URL (redis://, redis+sentinel:// "
                          "or amqp://)")
    for name, url in (("REDIS_URL", redis_url), ("HOOKLINE_BROKER_URL", broker_url)):
        _check_hosts(name, url)
    return dict(redis_url=redis_url, broker_url=broker_url)


def _check_hosts(name: str, url: str | None) -> None:
    """A Cluster's or Sentinel group's host list is read here, not at first use."""
    try:
        if url and redis_urls.is_sentinel(url):
            redis_urls.sentinel_master(url)
        elif url and redis_urls.is_cluster(url):
            redis_urls.parse(url, redis_urls.REDIS_PORT)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _inbox(env: Mapping[str, str]) -> dict:
    return dict(
        inbox_shards=_int(env, "HOOKLINE_INBOX_SHARDS", 1, maximum=MAX_SHARDS),
        inbox_wait_replicas=_int(env, "HOOKLINE_INBOX_WAIT_REPLICAS", 0, minimum=0,
                                 maximum=16),
        inbox_wait_timeout_ms=_int(env, "HOOKLINE_INBOX_WAIT_TIMEOUT_MS", 500, minimum=10,
                                   maximum=5000),
    )


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = with_files(os.environ if env is None else env)
    keys = _secret_keys(env)
    log_format = env.get("HOOKLINE_LOG_FORMAT", "json").strip().lower() or "json"
    if log_format not in ("json", "text"):
        raise ConfigError(f"HOOKLINE_LOG_FORMAT must be json or text, got {log_format!r}")
    return Settings(
        database_url=_url(env, "DATABASE_URL", ("postgresql://", "postgres://")),
        **_redis_urls(env),
        api_token=env.get("HOOKLINE_API_TOKEN") or None,
        secret_keys=keys,
        secret_key=keys[0] if keys else None,
        console_session_key=_session_key(env),
        callback_token=env.get("HOOKLINE_CALLBACK_TOKEN") or None,
        callback_tokens=_per_source(env, "HOOKLINE_CALLBACK_TOKEN_"),
        signatures=_signatures(env),
        max_body_bytes=_int(env, "HOOKLINE_MAX_BODY_BYTES", 262144),
        max_body_bytes_set=_set(env, "HOOKLINE_MAX_BODY_BYTES") is not None,
        max_body_bytes_by_source=_per_source_ints(env, "HOOKLINE_MAX_BODY_BYTES_"),
        verify_keys=_per_source(env, "HOOKLINE_VERIFY_KEY_"),
        batch_size=_int(env, "HOOKLINE_BATCH_SIZE", 500, maximum=MAX_BATCH_SIZE),
        batch_bytes=_int(env, "HOOKLINE_BATCH_BYTES", 2 * 1024 * 1024, minimum=65536),
        lease_seconds=_int(env, "HOOKLINE_LEASE_SECONDS", 60, minimum=5),
        max_attempts=_int(env, "HOOKLINE_MAX_ATTEMPTS", 3),
        db_pool_size=_int(env, "HOOKLINE_DB_POOL_SIZE", 4),
        opt_in_keywords=_words(env, "HOOKLINE_OPT_IN_KEYWORDS", ("START", "SUBSCRIBE")),
        opt_out_keywords=_words(env, "HOOKLINE_OPT_OUT_KEYWORDS", ("STOP", "UNSUBSCRIBE")),
        trusted_proxy_hops=_int(env, "HOOKLINE_TRUSTED_PROXY_HOPS", 0, minimum=0),
        allowed_networks=_networks(env, "HOOKLINE_ALLOWED_IPS_"),
        allow_private_endpoints=_bool(env, "HOOKLINE_ALLOW_PRIVATE_ENDPOINTS"),
        callbacks_open=_bool(env, "HOOKLINE_CALLBACKS_OPEN"),
        delivery_timeout=_float(env, "HOOKLINE_DELIVERY_TIMEOUT", 10.0, minimum=0.1),
        retry_schedule=_schedule(env, "HOOKLINE_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE),
        retention_days=load_retention_days(env),
        partition_interval_days=partition_interval(env),
        log_format=log_format,
        **_fanout(env),
        **_inbox(env),
        **_console(env),
    )


def _console(env: Mapping[str, str]) -> dict:
    users = _console_users(env)
    signers = ("HOOKLINE_CONSOLE_SESSION_KEY", "HOOKLINE_SECRET_KEYS", "HOOKLINE_SECRET_KEY",
               "HOOKLINE_API_TOKEN")
    if users and not any(_set(env, name) for name in signers):
        # The session cookie is signed with one of them, or a key derived from it.
        raise ConfigError("HOOKLINE_CONSOLE_USERS needs HOOKLINE_CONSOLE_SESSION_KEY (or "
                          "HOOKLINE_SECRET_KEYS, HOOKLINE_SECRET_KEY or HOOKLINE_API_TOKEN) "
                          "set: the console's session is signed with it")
    return dict(console_enabled=_bool(env, "HOOKLINE_CONSOLE", True), console_users=users,
                console_secure_cookie=_bool(env, "HOOKLINE_CONSOLE_SECURE_COOKIE", True))
