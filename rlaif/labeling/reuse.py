"""A jury's members' verdicts taken from their own runs (`rlaif label --member-labels DIR`): each DIR is one member's
label folder (`rlaif label`) or score folder (`rlaif score`), matched to the member by judge hash. A member takes
its verdict on a pair from its DIR only when the stored record is exactly what it would write now (its resume key,
the pair's content, the constitution, and numbers the guard accepts); any other pair it judges as it would alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..config.judge import JuryJudgeConfig
from ..constitution import Constitution
from ..data.labels import numbered, open_labels
from ..judges.base import ScoreJudge, kind_of
from ..numbers import label_problem, score_record_problem
from ..scoring.rate import plan_response
from ..scoring.responses import pair_items
from .jury import MemberVerdict, label_verdict, score_verdict
from .pairwise import record_key


@dataclass
class MemberRuns:
    """The records of each member's DIR, by member name: a label folder's by pair id, a score folder's by response
    id ("PAIR:a"). Records the numbers guard refuses, and ids stored twice, are left out (judged again)."""

    records: dict[str, dict[str, dict]]

    @classmethod
    def open(cls, jury: JuryJudgeConfig, paths: Sequence[str | Path]) -> "MemberRuns":
        """Read each DIR and match it to its member by the judge hash on its records. A DIR of no member's, of
        several judges', of the other kind than its member's, or a second one for a member is refused (ValueError)."""
        if not isinstance(jury, JuryJudgeConfig):
            raise ValueError("--member-labels takes a jury's members' runs: the judge is not a jury (backend: jury)")
        members = {c.settings_sha256(): (name, c) for name, c in jury.seated()}
        records: dict[str, dict[str, dict]] = {}
        given: dict[str, Path] = {}
        for path in map(Path, paths):
            try:
                source = open_labels(path)
            except FileNotFoundError as e:
                raise ValueError(f"--member-labels {path}: {e} (give a member's own run)") from None
            by_id, judges, twice = {}, set(), set()
            for _, r in numbered(source.file):
                judges.add((r.get("judge") or {}).get("settings_sha256"))
                if r.get("id") in by_id:
                    twice.add(r["id"])
                by_id[r.get("id")] = r
            if len(judges) != 1 or None in judges:
                what = "no records" if not judges else "records of no judge" if judges == {None} else "several judges"
                raise ValueError(f"--member-labels {path}: it holds {what}; give one member's own run per folder")
            sha = judges.pop()
            if sha not in members:
                known = ", ".join(f"{n} {s[:12]}" for s, (n, _) in members.items())
                raise ValueError(f"--member-labels {path}: its judge ({sha[:12]}) is no member of the jury ({known})")
            name, config = members[sha]
            if name in given:
                raise ValueError(f"--member-labels {path}: member {name} has a folder already ({given[name]})")
            score = kind_of(config) is ScoreJudge
            if score != (source.kind == "scores"):
                raise ValueError(f"--member-labels {path}: member {name} is a {'score' if score else 'pairwise'} judge")
            scale = (config.score.low, config.score.high) if score else None
            given[name] = path
            records[name] = {
                i: r
                for i, r in by_id.items()
                if i not in twice and (score_record_problem(r, scale) if score else label_problem(r)) is None
            }
        return cls(records)

    def verdicts(self, name: str, member, batch: Sequence, constitution: Constitution) -> list[Optional[MemberVerdict]]:
        """The member's stored verdict on each planned pair of `batch`, None where it must judge the pair itself."""
        stored = self.records.get(name)
        if stored is None:
            return [None] * len(batch)
        sha = member.config.settings_sha256()
        found = _scored if kind_of(member.config) is ScoreJudge else _labelled
        return [found(name, member, pl, stored, constitution, sha) for pl in batch]


def _labelled(name, member, pl, stored, constitution, sha) -> Optional[MemberVerdict]:
    """A pairwise member's record of the pair in the order the jury sees it (one stored swapped is judged again)."""
    pair, r = pl.item, stored.get(pl.id)
    same = r is not None and [r.get(f) for f in ("prompt", "response_a", "response_b", "constitution_sha256")] == [
        pair.prompt,
        pair.response_a,
        pair.response_b,
        constitution.sha256,
    ]
    if not same or r["status"] != "ok" or r.get("key") != record_key(pair, pl.principles, constitution.sha256, sha):
        return None
    orders = r.get("p_a_orders")
    if not isinstance(orders, list) or None in orders:  # a pairwise member's ok record has both orders
        return None
    return label_verdict(name, r, reused=True)


def _scored(name, member, pl, stored, constitution, sha) -> Optional[MemberVerdict]:
    """A score member's two records of the pair ("PAIR:a", "PAIR:b"), each rated as `rlaif score` rates it now."""
    sides = []
    for item in pair_items(pl.item):
        r = stored.get(item.id)
        key = plan_response(item, constitution, sha, pl.seed).key
        if r is None or r["status"] != "ok" or r.get("key") != key:
            return None
        if [r.get(f) for f in ("prompt", "response", "constitution_sha256")] != [
            item.prompt,
            item.response,
            constitution.sha256,
        ]:
            return None
        sides.append(r)
    return score_verdict(name, member.config, constitution, pl.id, *sides, reused=True)
