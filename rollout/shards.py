"""Shards: several engines split the CanaryReleases of one cluster by a label.

An engine started with ``--shard VALUE`` handles only releases labelled
``canarybot.io/shard=VALUE`` and leads through its own Lease (``<lease>-VALUE``); the
engine without ``--shard`` handles only releases without the label. All releases of one
target Deployment belong in one shard: an engine checks a new release against the other
releases it sees (its own shard's), and against the canary objects in the cluster.
"""

from __future__ import annotations

import re

SHARD_LABEL = "canarybot.io/shard"
# A label value that also fits in object names (the shard's Lease and Deployment):
# lowercase letters, digits and '-', at most 42 characters.
_VALUE = re.compile(r"[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?")


def check_shard(value: str) -> str:
    """``value`` when it can be a label value; raises ``ValueError`` saying why not."""
    if not _VALUE.fullmatch(value):
        raise ValueError(
            f"{value[:80]!r} is not a valid shard name: use 1-42 lowercase letters, digits "
            "or '-', starting and ending with a letter or digit"
        )
    return value


def release_selector(shard: str | None) -> str:
    """The label selector of the releases an engine of ``shard`` handles."""
    return f"{SHARD_LABEL}={shard}" if shard else f"!{SHARD_LABEL}"


def shard_lease_name(lease_name: str, shard: str | None) -> str:
    """The Lease a shard's engines elect their leader with (one per shard)."""
    return f"{lease_name}-{shard}" if shard else lease_name
