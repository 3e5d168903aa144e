"""Claims: every statement about a result, as data (the registry: :mod:`.our_claims` and
:mod:`.lesson_claims`).

A :class:`Claim` reads one metrics file (its dataclass, :mod:`.metrics`): for each subject it
is about (a network, or the run) it takes the numbers that decide it (``numbers``), decides
(``test``, a predicate over those numbers) and renders the sentence for that outcome, the one
when it holds or the one when it does not, each written with those same numbers. So a sentence
cannot say more than its numbers, and cannot go stale when the numbers move: the other
sentence is shown.

A notebook shows a claim with ``ns.claim(id, metrics)`` (the metrics dataclass it is about to
save, or part of it); the report, the README block and the sweep evaluate every claim from a
run's saved metrics files with ``evaluate_claims`` (both in :mod:`.decide`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: A claim's subject when it is about the run as a whole, not one network.
RUN = "run"


@dataclass(frozen=True)
class Claim:
    """One statement about a result.

    ``id`` (``<notebook metrics>.<what>``), ``notebook`` (the registry's name of the notebook
    that shows it), ``reads`` (the metrics dataclass it reads), ``subjects`` (the networks it is
    about, from the metrics; default: the run), ``numbers`` (the numbers that decide it for one
    subject, a dict; None where it does not apply to that subject), ``test`` (the predicate over
    those numbers), ``holds`` and ``fails`` (``str.format`` templates over the numbers and
    ``subject``: the sentence for each outcome), ``says`` (the claim in a few words)."""

    id: str
    notebook: str
    reads: type
    says: str
    numbers: Callable[[Any, str], dict | None]
    test: Callable[[dict], bool]
    holds: str
    fails: str
    subjects: Callable[[Any], Iterable[str]] = field(default=lambda m: (RUN,))

    def verdicts(self, metrics: Any) -> list[Verdict]:
        """The claim decided for every subject of ``metrics`` (an instance of ``reads``)."""
        out = []
        for subject in self.subjects(metrics):
            numbers = self.numbers(metrics, subject)
            if numbers is not None:
                out.append(self.decide(numbers, subject))
        return out

    def decide(self, numbers: Mapping[str, Any], subject: str = RUN) -> Verdict:
        """The verdict on ``numbers`` and its sentence."""
        holds = bool(self.test(numbers))
        sentence = (self.holds if holds else self.fails).format(subject=subject, **numbers)
        return Verdict(self.id, self.notebook, subject, holds, sentence, dict(numbers))


@dataclass(frozen=True)
class Verdict:
    """One claim on one subject: whether it holds, its sentence and the numbers it rests on."""

    claim: str
    notebook: str
    subject: str
    holds: bool
    sentence: str
    numbers: dict

    def _repr_markdown_(self) -> str:
        return self.sentence


@dataclass(frozen=True)
class Rendered:
    """A claim's verdicts on every subject, shown as Markdown in a notebook (one sentence, or
    one bullet a network)."""

    claim: Claim
    verdicts: tuple[Verdict, ...]

    @property
    def holds(self) -> bool:
        return all(v.holds for v in self.verdicts)

    @property
    def markdown(self) -> str:
        if not self.verdicts:
            return f"*({self.claim.says}: nothing in this run to decide it.)*"
        if len(self.verdicts) == 1 and self.verdicts[0].subject == RUN:
            return self.verdicts[0].sentence
        return "\n".join(f"- **{v.subject}**: {v.sentence}" for v in self.verdicts)

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __str__(self) -> str:
        return self.markdown

    __repr__ = __str__  # a notebook's plain-text output: the sentences, not the dataclass


_REGISTRY: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    """Add ``claim`` to the registry (ids are unique)."""
    if claim.id in _REGISTRY:
        raise ValueError(f"claim {claim.id!r} is registered twice")
    _REGISTRY[claim.id] = claim
    return claim
