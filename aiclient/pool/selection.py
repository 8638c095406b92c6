"""Selection strategies: which of the usable instances takes the next attempt (pure).

Each strategy sees only candidates that may be picked (usable, not tried by this
request, under their concurrency limit) and the small per-type memory a Selector
keeps, so nothing here can pick a member a request already failed on. Ties never go
to "the first in the list" (LiteLLM #39322's starvation): they rotate from the last
pick. Fairness under concurrency comes from the pool counting a request in flight at
selection time, before any await.

* round_robin: the next member after the last pick, in file order (stable when
  members leave and come back, unlike the original's index over a changing list).
* weighted: smooth weighted round robin (nginx's): deterministic, interleaved, and
  exact over every window of sum(weights) picks. Weight 0 takes no traffic.
* least_connections: fewest requests in flight.
* random: a shuffled deck, refilled when empty; random order, equal shares.
* lru: the member picked longest ago.
* adaptive: lowest latency EWMA x (1 + in flight) x (1 + 4 x error rate EWMA);
  a member without latency yet counts as the fastest known, so it gets tried.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .models import NodeState

__all__ = ["Candidate", "Selector"]


class Candidate(NamedTuple):
    pos: int  # position in the type's list (file order)
    uuid: str
    state: NodeState
    weight: float


@dataclass(slots=True)
class Selector:
    """One provider type's strategy and the memory it needs between picks."""

    strategy: str = "round_robin"
    weights: Mapping[str, float] | None = None  # from config; else each node's own
    rng: random.Random = field(default_factory=random.Random)
    cursor: int = -1  # file index of the last pick
    current: dict[str, float] = field(default_factory=dict)  # smooth WRR
    deck: list[str] = field(default_factory=list)

    def weight_of(self, uuid: str, node_weight: float | None) -> float:
        if self.weights is not None and uuid in self.weights:
            return self.weights[uuid]
        return 1.0 if node_weight is None else node_weight

    def choose(self, candidates: Sequence[Candidate]) -> Candidate:
        """One of `candidates` (never empty)."""
        if len(candidates) == 1:
            pick = candidates[0]  # every strategy's answer; none keeps memory of it
        else:
            pick = _PICKERS.get(self.strategy, Selector._round_robin)(self, candidates)
        self.cursor = pick.pos
        return pick

    def _rotation(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Candidates in round-robin order: after the last pick, wrapping around."""
        return sorted(candidates, key=lambda c: (c.pos <= self.cursor, c.pos))

    def _round_robin(self, candidates: Sequence[Candidate]) -> Candidate:
        # candidates come in file order: the first after the last pick, else wrap
        cursor = self.cursor
        for candidate in candidates:
            if candidate.pos > cursor:
                return candidate
        return candidates[0]

    def _least(
        self, candidates: Sequence[Candidate], key: Callable[[Candidate], float]
    ) -> Candidate:
        """The minimum by `key`; ties go in rotation order."""
        return min(self._rotation(candidates), key=key)

    def _least_connections(self, candidates: Sequence[Candidate]) -> Candidate:
        return self._least(candidates, lambda c: c.state.in_flight)

    def _lru(self, candidates: Sequence[Candidate]) -> Candidate:
        return self._least(candidates, lambda c: c.state.picked)

    def _weighted(self, candidates: Sequence[Candidate]) -> Candidate:
        live = [c for c in candidates if c.weight > 0] or list(candidates)
        total = 0.0
        for c in live:
            weight = c.weight if c.weight > 0 else 1.0
            self.current[c.uuid] = self.current.get(c.uuid, 0.0) + weight
            total += weight
        best = max(self._rotation(live), key=lambda c: self.current[c.uuid])
        self.current[best.uuid] -= total
        return best

    def _random(self, candidates: Sequence[Candidate]) -> Candidate:
        by_uuid = {c.uuid: c for c in candidates}
        for _ in range(2):
            while self.deck:
                uid = self.deck.pop()
                if uid in by_uuid:
                    return by_uuid[uid]
            self.deck = list(by_uuid)
            self.rng.shuffle(self.deck)
        return candidates[0]  # pragma: no cover - the deck always holds one

    def _adaptive(self, candidates: Sequence[Candidate]) -> Candidate:
        known = [c.state.latency for c in candidates if c.state.latency is not None]
        fastest = min(known) if known else 1.0

        def score(c: Candidate) -> float:
            latency = c.state.latency if c.state.latency is not None else fastest
            return (
                max(latency, 1e-6) * (1 + c.state.in_flight) * (1 + 4 * c.state.error_rate)
            )

        return self._least(candidates, score)


_PICKERS: dict[str, Callable[[Selector, Sequence[Candidate]], Candidate]] = {
    "round_robin": Selector._round_robin,
    "weighted": Selector._weighted,
    "least_connections": Selector._least_connections,
    "random": Selector._random,
    "lru": Selector._lru,
    "adaptive": Selector._adaptive,
}
