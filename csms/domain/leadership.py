"""Who may plan a site and dispatch its profiles: the vocabulary shared by the smart-charging loop
and the gateways. In a single process that process leads every site; in a cluster one worker at a
time holds each site's lease (csms.cluster.leadership), and every dispatch carries a ``Fence``."""

from __future__ import annotations

from dataclasses import dataclass

SINGLE_PROCESS = "single-process"


@dataclass(frozen=True, slots=True)
class Fence:
    """What a dispatch is made under: a site's lease, by token and holder. Travels with routed
    commands so that the worker holding the charger checks it last, right before the call."""

    site_id: str
    token: int
    worker_id: str


class SoleLeader:
    """Single-process mode: this process leads every site. Its fences are never checked (there is
    no other process that could dispatch for the same site)."""

    def is_leader(self, site_id: str) -> bool:
        """Always."""
        return True

    def fence(self, site_id: str) -> Fence:
        """A token that no gateway checks in single-process mode."""
        return Fence(site_id, 0, SINGLE_PROCESS)
