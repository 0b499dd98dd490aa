"""What the live population shares: a client context that several independent live accounts use
is common, whatever the calibration traffic saw, and so are the parameter signatures they send.

Calibration learns what honest accounts share from a benign history. A population it never saw
(a company behind one NAT) looks rare there, and sharing it would look like coordination. So the
linker also counts, among the accounts it is scoring, the users of each context that are
independent of the pair under test: not the pair itself (as cross-fitted calibration leaves the
measured pair out of what counts as common), nor accounts alike to either of them in evidence
that no network explains, which may be the same actor: filling the same benign-rare template, or
alike in behaviour on the same context (`related`: the linker asks whether their hours
coincide beyond chance, or whether what and when they send would be a weak link without their
network). Links do not make accounts alike: a link that rests on the shared context itself
would keep the context looking rare. `common_accounts` independent users make a context
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
    """Independent live users per context, for one evaluation of pairs (build one per batch,
    after the batch is ingested: what it learns of accounts is cached). Counting stops at the
    `min_accounts` asked for, so an office of hundreds costs a few `related` tests per pair,
    not one per colleague."""

    def __init__(
        self,
        profiles: Profiles,
        max_posting: int = 256,
        related: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._profiles = profiles
        self._max_posting = max_posting
        self._related = related
        self._templated: dict[str, set[str]] = {}
        self._asked: dict[str, set[str]] = {}
        self._near: dict[str, set[str]] = {}
        self._in_step: dict[tuple[str, str], bool] = {}
        self._stepped: dict[str, set[str]] = {}  # the accounts found `related` to each

    def templated(self, account: str) -> set[str]:
        """The account and the accounts that filled one of its benign-rare templates too (each
        at least twice; a template of more than `max_posting` accounts is a popular format, not
        one actor's)."""
        found = self._templated.get(account)
        if found is not None:
            return found
        profiles = self._profiles
        found = {account}
        for key, template in profiles[account].templates.items():
            users = profiles.key_users(key)
            if key.startswith("p|") or template.count < 2 or len(users) > self._max_posting:
                continue
            found.update(u for u in users if (t := profiles[u].templates.get(key)) and t.count >= 2)
        self._templated[account] = found
        return found

    def asked(self, context: str) -> set[str]:
        """The context's users, or the first `max_posting` of a crowded one (those whose
        timing is asked about)."""
        users = self._asked.get(context)
        if users is None:
            users = self._profiles.context_users(context)
            if len(users) > self._max_posting:
                users = set(heapq.nsmallest(self._max_posting, users))
            self._asked[context] = users
        return users

    def near(self, account: str) -> set[str]:
        """The accounts `asked` about on any of the account's contexts."""
        found = self._near.get(account)
        if found is None:
            found = set().union(*map(self.asked, self._profiles[account].contexts))
            self._near[account] = found
        return found

    def alike(self, account: str, other: str) -> bool:
        """Whether `other` may be the same actor as `account`: it is the account, filled one of
        its `templated` forms, or is `near` it and `related` to it (alike beyond the network)."""
        if other in self.templated(account):
            return True
        if self._related is None or other not in self.near(account):
            return False
        key = (account, other)
        found = self._in_step.get(key)
        if found is None:
            found = self._in_step[key] = self._related(account, other)
            if found:
                self._stepped.setdefault(account, set()).add(other)
        return found

    def _independent(
        self, users: set[str], a: str, b: str, needed: int, sending: str | None = None
    ) -> bool:
        """Whether at least `needed` of `users` (those `sending` a parameter signature, when
        given) are alike to neither `a` nor `b`. Those known alike are set aside at once: each
        of a campaign's pairs meets the whole campaign."""
        if needed <= 0:
            return True
        known = (self.templated(a), self.templated(b), *(self._stepped.get(x, ()) for x in (a, b)))
        rest = users.difference(*known)
        if len(rest) < needed:
            return False
        profiles = self._profiles
        for user in rest:
            if sending is not None and sending not in profiles[user].params:
                continue
            if not (self.alike(a, user) or self.alike(b, user)):
                needed -= 1
                if not needed:
                    return True
        return False

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
            if c in known or self._independent(profiles.context_users(c), a, b, min_accounts)
        }

    def common_signatures(
        self, a: str, b: str, min_accounts: int, asked: Callable[[str], bool] | None = None
    ) -> set[str]:
        """Parameter signatures `a` and `b` share, of those `asked` about, that `min_accounts`
        independent accounts on their contexts use too: the defaults of a client that a whole
        network runs (the first `max_posting` accounts of a crowded context are asked; `asked`:
        all shared signatures when None)."""
        profiles = self._profiles
        shared = profiles[a].params.keys() & profiles[b].params.keys()
        if asked is not None:
            shared = {s for s in shared if asked(s)}
        if not shared:
            return set()
        neighbours = self.near(a) | self.near(b)
        return {s for s in shared if self._independent(neighbours, a, b, min_accounts, sending=s)}
