"""Exception taxonomy. Errors are raised anywhere and rendered once, in the client's shape.

* AiclientError                        status  retryable
  x ConfigError                         -       -       start-up / reload; CLI exit 2
  x ClientError                         4xx     no      the caller's fault
    + InvalidRequest                    400             bad JSON, missing fields, bad header
    + Unauthorized                      401
    + RouteNotFound                     404
    + ModelNotFound                     404
    + MethodNotAllowed                  405
    + PayloadTooLarge                   413
    + UnsupportedConversion             400             the target protocol cannot
                                                        express part of the request
  x UnsupportedFeature                  501     no      a path this build cannot serve yet
  x NoProviderAvailable                 503     no      no usable instance of a type
    + PoolCoolingDown                   429             every usable one is cooling
    + ConcurrencyLimited                429             concurrencyLimit and queue full
  x UpstreamError                       502     varies  .node_uuid
    + UpstreamHTTPError                 (its own)  .body, .headers, .retry_after
    + UpstreamTimeout                   504     yes
    + UpstreamConnectError              502     yes     refused, reset, DNS, cut body
    + UpstreamProtocolError             502     yes     unparsable answer
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

__all__ = [
    "CLIENT_FAULT_STATUSES",
    "AiclientError",
    "ClientError",
    "ConcurrencyLimited",
    "ConfigError",
    "InvalidRequest",
    "MethodNotAllowed",
    "ModelNotFound",
    "NoProviderAvailable",
    "PayloadTooLarge",
    "PoolCoolingDown",
    "RouteNotFound",
    "Unauthorized",
    "UnsupportedConversion",
    "UnsupportedFeature",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamHTTPError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
    "failure_class",
]

# Upstream answers that blame the request, not the instance: relayed as they came,
# never counted against the instance and never retried elsewhere.
CLIENT_FAULT_STATUSES = frozenset({400, 404, 413, 422})


class AiclientError(Exception):
    """Base class. `status` is the HTTP status the client sees."""

    status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    kind: ClassVar[str] = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def http_status(self) -> int:
        return self.status


class ConfigError(AiclientError):
    """An invalid config.json or pool file; the message names the file and place."""


class ClientError(AiclientError):
    status = 400
    kind = "invalid_request_error"


class InvalidRequest(ClientError):
    status = 400


class Unauthorized(ClientError):
    status = 401
    kind = "authentication_error"


class RouteNotFound(ClientError):
    status = 404
    kind = "not_found_error"


class ModelNotFound(RouteNotFound):
    kind = "model_not_found"


class MethodNotAllowed(ClientError):
    status = 405


class PayloadTooLarge(ClientError):
    status = 413
    kind = "request_too_large"


class UnsupportedConversion(ClientError):
    """The request uses something the upstream's protocol cannot express; the message
    names it. Raised instead of silently dropping what matters."""

    status = 400


class UnsupportedFeature(AiclientError):
    status = 501
    kind = "invalid_request_error"


class NoProviderAvailable(AiclientError):
    status = 503
    kind = "overloaded_error"


class PoolCoolingDown(NoProviderAvailable):
    """Every instance that could serve is in a cooldown; `retry_after` says how long
    until the first one is tried again (sent as the Retry-After header)."""

    status = 429
    kind = "rate_limit_error"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConcurrencyLimited(NoProviderAvailable):
    status = 429
    kind = "rate_limit_error"


class UpstreamError(AiclientError):
    """A failure talking to one upstream instance."""

    status = 502
    retryable = True
    kind = "api_error"

    def __init__(self, message: str, *, node_uuid: str | None = None) -> None:
        super().__init__(message)
        self.node_uuid = node_uuid


class UpstreamHTTPError(UpstreamError):
    """The upstream answered with a non-2xx status; `body` is its raw answer."""

    def __init__(
        self,
        upstream_status: int,
        body: bytes,
        headers: Mapping[str, str],
        *,
        node_uuid: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"upstream answered HTTP {upstream_status}", node_uuid=node_uuid)
        self.upstream_status = upstream_status
        self.body = body
        self.headers = dict(headers)
        self.retry_after = retry_after

    @property
    def http_status(self) -> int:
        return self.upstream_status

    @property
    def client_fault(self) -> bool:
        return self.upstream_status in CLIENT_FAULT_STATUSES


class UpstreamTimeout(UpstreamError):
    status = 504
    kind = "timeout_error"


class UpstreamConnectError(UpstreamError):
    status = 502


class UpstreamProtocolError(UpstreamError):
    status = 502


def failure_class(error: UpstreamError) -> str:
    """What kind of failure an instance had, for metrics and (later) its policy."""
    if isinstance(error, UpstreamHTTPError):
        status = error.upstream_status
        if status == 429:
            return "rate_limited"
        if status in (401, 403):
            return "auth"
        if status == 402:
            return "quota"
        return "server" if status >= 500 else "http"
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamConnectError):
        return "network"
    return "protocol"
