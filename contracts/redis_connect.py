"""One way to connect to the Redis of the contract: a plain Redis URL, or a Redis Sentinel set.

Every plane (control plane, syncer and its RQ queue, data plane) and ``flagyard up`` builds its Redis
clients here, so a deployment switches to Sentinel by changing ``FLAGYARD_REDIS_URL`` alone.

URL forms:

- ``redis://``, ``rediss://``, ``unix://``: handed to redis-py's ``from_url`` unchanged (as before).
- ``redis+sentinel://[[user]:password@]host1[:port1][,host2[:port2]…]/<master-name>[/<db>]`` and
  ``rediss+sentinel://…`` (TLS to the Sentinels and the Redis servers). Sentinel ports default to 26379.
  The user and password are the Redis servers' (the master's and replicas'); query parameters
  ``sentinel_username`` and ``sentinel_password`` authenticate to the Sentinels when they require it.
  This is the form Prefect/docket and the Redis-Sentinel-Url package accept, so an operator who knows
  one of them knows ours; the master name sits in the path as a database number does in ``redis://``.

Why redis-py's own Sentinel support (``Sentinel.master_for``/``slave_for``): its connection pools ask the
Sentinels for the master's address at every new connection, drop connections to a master that was
demoted (``READONLY`` becomes a ``ConnectionError``) and so follow a failover with no code of ours; every
caller already treats a ``ConnectionError`` as "Redis is down for now" and retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
PLAIN_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_SENTINEL_PORT = 26379
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


class RedisUrlError(ValueError):
    """A Redis URL that cannot be used; the message names what is wrong, never the URL (it may hold a
    password)."""


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names. Its repr hides the passwords."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False

    def __repr__(self) -> str:
        return f"SentinelTarget({self.masked()!r})"

    def masked(self) -> str:
        """The URL fit to print: passwords replaced by ``***``, Sentinel parameters left out."""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        auth = ""
        if self.username is not None or self.password is not None:
            auth = f"{self.username or ''}{':***' if self.password is not None else ''}@"
        scheme = SENTINEL_SCHEMES[1] if self.ssl else SENTINEL_SCHEMES[0]
        return f"{scheme}://{auth}{hosts}/{self.master}/{self.db}"


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_sentinel_url(url: str) -> bool:
    return scheme_of(url) in SENTINEL_SCHEMES


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [v6]:port
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise RedisUrlError("a Sentinel address has no host")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RedisUrlError("a Sentinel address has a port that is not a number in 1..65535")
    return host, int(port_text)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse a ``redis+sentinel://`` URL (see the module's docstring); :class:`RedisUrlError` if it is not
    one, naming the part at fault."""
    scheme = scheme_of(url)
    if scheme not in SENTINEL_SCHEMES:
        raise RedisUrlError("not a redis+sentinel:// or rediss+sentinel:// URL")
    rest = url.split("://", 1)[1]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user_text, has_password, password_text = userinfo.partition(":")
        username = unquote(user_text) or None
        password = unquote(password_text) if has_password else None
    sentinels = tuple(_host_port(part) for part in hosts.split(",") if part)
    if not sentinels:
        raise RedisUrlError("a Sentinel URL names no Sentinel (host:port, comma-separated)")
    parts = [unquote(p) for p in path.split("/") if p]
    if not parts:
        raise RedisUrlError("a Sentinel URL names no master (…/<master-name>[/<db>])")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise RedisUrlError("a Sentinel URL's path is /<master-name>[/<db>], the db a number")
    options = {name: values[-1] for name, values in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - set(_SENTINEL_OPTIONS))
    if unknown:
        raise RedisUrlError(f"unknown Sentinel URL parameter(s): {', '.join(unknown)}")
    return SentinelTarget(
        sentinels=sentinels,
        master=parts[0],
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
        ssl=scheme == "rediss+sentinel",
    )


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a Redis (not one of our schemes, or a malformed Sentinel URL), or None."""
    scheme = scheme_of(url)
    if scheme in PLAIN_SCHEMES:
        return None
    if scheme in SENTINEL_SCHEMES:
        try:
            parse_sentinel_url(url)
        except RedisUrlError as exc:
            return str(exc)
        return None
    return "not a redis://, rediss://, unix://, redis+sentinel:// or rediss+sentinel:// URL"


def _sentinel_setup(
    target: SentinelTarget, options: dict[str, Any], no_retry: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(keyword arguments of the Sentinel clients, of the master/replica clients).

    The Sentinel clients get the caller's socket timeouts and no retries (``no_retry``): a discovery asks
    each Sentinel in turn anyway, and redis-py's default (three retries with exponential backoff, per
    Sentinel) would hold every new connection for seconds while the Sentinels are unreachable, even on the
    data plane's request path, whose own clients never retry."""
    sentinel_kwargs: dict[str, Any] = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel_kwargs["retry"] = no_retry
    if target.sentinel_password is not None:
        sentinel_kwargs["password"] = target.sentinel_password
    if target.sentinel_username is not None:
        sentinel_kwargs["username"] = target.sentinel_username
    if target.ssl:
        sentinel_kwargs["ssl"] = True
    server: dict[str, Any] = {**options, "db": target.db}
    if target.password is not None:
        server["password"] = target.password
    if target.username is not None:
        server["username"] = target.username
    if target.ssl:
        server["ssl"] = True
    return sentinel_kwargs, server


def redis_client(url: str, *, replica: bool = False, **options: Any) -> redis.Redis:
    """A synchronous client of the Redis ``url`` names; ``options`` are redis-py connection options
    (``socket_timeout``, ``decode_responses``…). With a Sentinel URL: the current master (``replica``: a
    replica, the master if none is up), re-discovered after a failover."""
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **options)
    target = parse_sentinel_url(url)
    sentinel_kwargs, server = _sentinel_setup(target, options, redis.retry.Retry(NoBackoff(), 0))
    sentinel = redis.sentinel.Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    role = sentinel.slave_for if replica else sentinel.master_for
    client: redis.Redis = role(target.master, redis_class=redis.Redis, **server)  # type: ignore[no-untyped-call]
    return client


def async_redis_client(url: str, *, replica: bool = False, **options: Any) -> redis.asyncio.Redis:
    """:func:`redis_client` for ``redis.asyncio``."""
    if not is_sentinel_url(url):
        return redis.asyncio.Redis.from_url(url, **options)
    target = parse_sentinel_url(url)
    sentinel_kwargs, server = _sentinel_setup(target, options, redis.asyncio.retry.Retry(NoBackoff(), 0))
    sentinel = redis.asyncio.sentinel.Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    role = sentinel.slave_for if replica else sentinel.master_for
    client: redis.asyncio.Redis = role(target.master, redis_class=redis.asyncio.Redis, **server)
    return client


async def aclose_client(client: redis.asyncio.Redis) -> None:
    """Close an asyncio client of :func:`async_redis_client` and, for a Sentinel URL, its own connections
    to the Sentinels (redis-py leaves those to whoever made the ``Sentinel``: us)."""
    pool = client.connection_pool
    await client.aclose()
    if isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool):
        await pool.sentinel_manager.aclose()


def close_client(client: redis.Redis) -> None:
    """:func:`aclose_client` for a synchronous client."""
    pool = client.connection_pool
    client.close()
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        pool.sentinel_manager.close()
