"""What the live population shares: a client context that several independent live accounts use
is common, whatever the calibration traffic saw, and so are the parameter signatures they send.

Calibration learns what honest accounts share from a benign history. A population it never saw
(a company behind one NAT) looks rare there, and sharing it would look like coordination. So the
linker also counts, among the accounts it is scoring, the users of each context that are
independent of the pair under test: not the pair itself (as cross-fitted calibration leaves the
measured pair out of what counts as common), nor accounts alike to either of them in evidence
that no network explains, which may be the same actor: filling the same benign-rare template, or
active in step on the same context (`related`: the linker asks whether their hours coincide
beyond chance). Links do not make accounts alike: a link that rests on the shared context
itself would keep the context looking rare. `common_accounts` independent users make a context
common, as that many benign accounts do in calibration, and make common a parameter signature
they send on the pair's contexts (a client's defaults across one network); a campaign's own
accounts do neither.

>>> from detectors.campaigns.profiles import Profiles
>>> from detectors.features import EventFeatures
>>> profiles = Profiles()
>>> for account in ("a", "b", "c", "d"):
...     _ = profiles.observe(EventFeatures(
...         request_id=account, account_id=account, timestamp_ms=0, prompt="hi", prompt_key="k",
...         simhash=0, temperature=0.0, max_tokens=256, n=1, logprobs=False, followup=False,
...         ip_prefix="10.0.0.0/24", user_agent="ua"), topic=None)
>>> sorted(LiveCounts(profiles).common_contexts("a", "b", min_accounts=2))  # c and d
['10.0.0.0/24 ua']
>>> in_step = LiveCounts(profiles, related=lambda one, other: {one, other} == {"a", "c"})
>>> in_step.common_contexts("a", "b", min_accounts=2)  # c may be a's accomplice: d alone
set()
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Set

from detectors.campaigns.profiles import Profiles


class LiveCounts:
    """Independent live users per context, for one evaluation of pairs (what
    each account is alike to is cached: build one per batch, after the batch is ingested)."""

    def __init__(
        self,
        profiles: Profiles,
        max_posting: int = 256,
        related: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._profiles = profiles
        self._max_posting = max_posting
        self._related = related
        self._alike: dict[str, set[str]] = {}

    def alike(self, account: str) -> set[str]:
        """The account, the accounts that filled one of its benign-rare templates
        too (each at least twice; a template of more than `max_posting` accounts is a popular
        format, not one actor's), and those `related` to it (`_in_step`)."""
        found = self._alike.get(account)
        if found is not None:
            return found
        profiles = self._profiles
        found = {account}
        for key, template in profiles[account].templates.items():
            users = profiles.key_users(key)
            if key.startswith("p|") or template.count < 2 or len(users) > self._max_posting:
                continue
            found.update(u for u in users if (t := profiles[u].templates.get(key)) and t.count >= 2)
        if self._related is not None:
            found |= self._in_step(account, found)
        self._alike[account] = found
        return found

    def _in_step(self, account: str, found: set[str]) -> set[str]:
        """Accounts on the account's contexts that are `related` to it (the first `max_posting`
        of a crowded context)."""
        profiles, related = self._profiles, self._related
        step: set[str] = set()
        for users in map(profiles.context_users, profiles[account].contexts):
            if len(users) > self._max_posting:
                users = set(heapq.nsmallest(self._max_posting, users))
            step.update(
                u for u in users - found - step if related is not None and related(account, u)
            )
        return step

    def _others(self, users: Set[str], a: str, b: str) -> int:
        """Users independent of `a` and `b`."""
        alike = self.alike(a) | self.alike(b)
        return len(users) - sum(1 for u in alike if u in users)

    def common_contexts(
        self, a: str, b: str, min_accounts: int, known: Set[str] = frozenset()
    ) -> set[str]:
        """Client contexts of `a` or `b` that are `known` to be common or that `min_accounts`
        independent live accounts use too."""
        profiles = self._profiles
        contexts = profiles[a].contexts.keys() | profiles[b].contexts.keys()
        return {
            c
            for c in contexts
            if c in known or self._others(profiles.context_users(c), a, b) >= min_accounts
        }

    def common_signatures(self, a: str, b: str, min_accounts: int) -> set[str]:
        """Parameter signatures `a` and `b` share that `min_accounts` independent accounts on
        their contexts use too: the defaults of a client that a whole network runs (the first
        `max_posting` accounts of a crowded context are asked)."""
        profiles = self._profiles
        shared = profiles[a].params.keys() & profiles[b].params.keys()
        if not shared:
            return set()
        neighbours: set[str] = set()
        for context in profiles[a].contexts.keys() | profiles[b].contexts.keys():
            users = profiles.context_users(context)
            if len(users) > self._max_posting:
                users = set(heapq.nsmallest(self._max_posting, users))
            neighbours |= users
        neighbours -= self.alike(a) | self.alike(b)
        return {
            s for s in shared if sum(s in profiles[u].params for u in neighbours) >= min_accounts
        }
