"""The client an issuer or auditor imports (`from node.sdk import Client`): HTTP only, signing
with chain/ keys, nothing of the node runtime. `node.client` stays as the old import path.
"""

from node.sdk.client import (
    AsyncClient,
    Client,
    NodeUnreachable,
    NotPermitted,
    Retry,
    RetryLater,
    RpcError,
    new_tx,
    retry_after_seconds,
    sign,
    tls_verify,
)

__all__ = [
    "AsyncClient",
    "Client",
    "NodeUnreachable",
    "NotPermitted",
    "Retry",
    "RetryLater",
    "RpcError",
    "new_tx",
    "retry_after_seconds",
    "sign",
    "tls_verify",
]
