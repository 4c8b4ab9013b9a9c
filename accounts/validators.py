"""Admin-entered upstream URLs: the proxy will send credentials and prompts there, so a URL is
checked before anything is stored or contacted (SSRF and credential exfiltration guard).

Refused: schemes other than http/https, credentials in the URL, and any host whose address
(literal or every resolved one) is not globally routable — private, loopback, link-local
(incl. cloud metadata 169.254.169.254), CGNAT, multicast, reserved — unless the deployment
explicitly allows private upstreams (PROXY_ALLOW_PRIVATE_UPSTREAMS, e.g. a LAN vLLM or the
test fakes). Cloud metadata endpoints are refused even then: no legitimate upstream lives
there and it is the classic SSRF target.

Limit (documented in docs/security.md): the check runs when the URL is entered; a hostname
whose DNS later changes to a private address (DNS rebinding) is not re-checked per request.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

_METADATA = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, DigitalOcean
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6 IMDS
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ValidationError(f"the host {host!r} cannot be resolved", code="unresolvable") from None
    # Scope ids ("fe80::1%eth0") are not part of the address.
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def _refused(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return not ip.is_global or ip.is_multicast


def upstream_url_validate(url: str, *, allow_private: bool | None = None) -> str:
    """Return the URL (trailing slash removed) or raise ValidationError saying why not."""
    allow = settings.PROXY_ALLOW_PRIVATE_UPSTREAMS if allow_private is None else allow_private
    if not isinstance(url, str) or len(url) > 2000:
        raise ValidationError("the URL must be a string of at most 2000 characters", code="invalid")
    try:
        parts = urlsplit(url.strip())
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValidationError("the URL is not valid", code="invalid") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("the URL must start with http:// or https://", code="scheme")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("the URL must not contain a user name or password", code="userinfo")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise ValidationError("the URL has no host", code="invalid")
    if host in _METADATA_NAMES:
        raise ValidationError("cloud metadata endpoints are never valid upstreams", code="metadata")
    if allow:
        # Internal upstreams are trusted by configuration: only literal metadata addresses
        # are still refused, and no DNS lookup is needed (tests and air-gapped setups).
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = []
    else:
        addresses = _addresses(host, port)
    if any(ip in _METADATA or getattr(ip, "ipv4_mapped", None) in _METADATA for ip in addresses):
        raise ValidationError("cloud metadata endpoints are never valid upstreams", code="metadata")
    if not allow:
        bad = [str(ip) for ip in addresses if _refused(ip)]
        if bad:
            raise ValidationError(
                f"the host {host!r} resolves to a private, loopback or link-local address ({', '.join(bad)}); "
                "set PROXY_ALLOW_PRIVATE_UPSTREAMS=true to allow internal upstreams",
                code="private",
            )
    return url.strip().rstrip("/")


def provider_config_validate(config: Any, *, allow_private: bool | None = None) -> None:
    """Every URL in an account's provider_config passes the same check as its base URL
    (issue 17 F6: `auth_url`, `instance_url`, `gateway_url` were stored and used unchecked).

    A URL is any value under a key ending in `_url` (or named `url`), at any depth; a value
    that is not a string there is refused too. Raises ValidationError naming the key.
    """
    for path, value in _url_fields(config, ""):
        if not isinstance(value, str):
            raise ValidationError(f"provider_config {path}: must be a URL string", code="invalid")
        try:
            upstream_url_validate(value, allow_private=allow_private)
        except ValidationError as exc:
            raise ValidationError(f"provider_config {path}: {'; '.join(exc.messages)}", code=exc.code) from None


def _url_fields(value: Any, path: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and (key == "url" or key.endswith("_url")) and item not in (None, ""):
                found.append((where, item))
            else:
                found += _url_fields(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _url_fields(item, f"{path}[{i}]")
    return found


def upstream_url_checked(url: str) -> str:
    """`upstream_url_validate` at the point of use (an account row written before the check
    existed, or behind the services' back); successes are cached per process, so the hot path
    pays one dict lookup."""
    return _checked(url, bool(settings.PROXY_ALLOW_PRIVATE_UPSTREAMS))


@functools.lru_cache(maxsize=1024)
def _checked(url: str, allow_private: bool) -> str:
    return upstream_url_validate(url, allow_private=allow_private)
