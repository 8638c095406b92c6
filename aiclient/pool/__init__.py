"""The provider pool: instances, their state, selection and the pool file."""

from .manager import Entry, Lease, ProviderPool
from .models import SERVER_FIELDS, NodeState, ProviderNode

__all__ = [
    "SERVER_FIELDS",
    "Entry",
    "Lease",
    "NodeState",
    "ProviderNode",
    "ProviderPool",
]
