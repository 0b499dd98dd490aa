"""What linking remembers about each account, and the inverted indexes (postings) that find the
accounts worth comparing with it without looking at every pair.

>>> from detectors.features import EventFeatures
>>> def request(account, ms, agent="python-requests/2.32", prefix="203.0.114.0/24"):
...     return EventFeatures(request_id=f"{account}-{ms}", account_id=account, timestamp_ms=ms,
...                          prompt="hi", prompt_key="k", simhash=0, temperature=0.0,
...                          max_tokens=256, n=1, logprobs=False, followup=False,
...                          ip_prefix=prefix, user_agent=agent)
>>> profiles = Profiles()
>>> for account in ("a", "b", "c"):
...     _ = profiles.observe(request(account, 1_000), topic=None)
>>> sorted(profiles.partners("a", {("python-requests/2.32", 0)}, max_posting=256))
['b', 'c']
>>> _ = profiles.observe(request("d", 2_000, prefix=""), topic=None, keys=["w1f2"])
>>> _ = profiles.observe(request("e", 9_000_000, prefix=""), topic=None, keys=["w1f2"])
>>> sorted(profiles.partners("e", set(), max_posting=256, keys=["w1f2"]))
['d']
>>> param_signature(request("a", 0))
't=0|m=256|n=1|lp=0'
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.timeutil import DAY_MS, HOUR_MS, MINUTE_MS
from detectors.features import EventFeatures

MAX_TEMPLATES = 256  # skeleton keys remembered per account (the most recent)
MAX_FILLINGS = 4  # distinct prompts remembered per skeleton and account


def param_signature(f: EventFeatures) -> str:
    """Generation settings as one token: harvesters pin them (temperature 0, long outputs)."""
    temperature = "-" if f.temperature is None else f"{f.temperature:g}"
    return f"t={temperature}|m={f.max_tokens}|n={f.n}|lp={int(f.logprobs)}"


def client_context(f: EventFeatures) -> str | None:
    """The client's /24 and user agent as one token (None without an IP)."""
    return f"{f.ip_prefix} {f.user_agent}" if f.ip_prefix else None


@dataclass
class Template:
    """One account's use of one skeleton: when last, how often, and a few of the prompts
    (their keys) that filled it."""

    last_ms: int
    count: int = 0
    fillings: set[str] = field(default_factory=set)

    def to_json(self) -> list[Any]:
        return [self.last_ms, self.count, sorted(self.fillings)]

    @classmethod
    def from_json(cls, data: list[Any]) -> Template:
        return cls(data[0], data[1], set(data[2]))


@dataclass
class AccountProfile:
    """What linking remembers about one account (recent days and hours only)."""

    first_seen_ms: int
    last_seen_ms: int
    requests: int = 0
    contexts: dict[str, set[int]] = field(default_factory=dict)  # "prefix ua" -> days used
    agent_hours: dict[str, set[int]] = field(default_factory=dict)  # user agent -> hour buckets
    params: Counter[str] = field(default_factory=Counter)  # parameter signature -> requests
    topics: Counter[int] = field(default_factory=Counter)  # benign centroid -> prompts
    # benign-rare skeleton (or, keyed "p|…", parameter signature) -> its use: the postings
    templates: dict[str, Template] = field(default_factory=dict)
    minutes: dict[int, set[int]] = field(default_factory=dict)  # hour bucket -> minutes active
    # Bumped whenever `minutes` changes, so the linker smooths an account's rhythm again only
    # then (`CampaignLinker._schedule` keeps it in `rhythm_memo`); neither is serialised.
    minutes_version: int = field(default=0, compare=False, repr=False)
    rhythm_memo: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def hours(self) -> set[int]:
        return set().union(*self.agent_hours.values())

    def observe(self, f: EventFeatures, topic: int | None, keys: Iterable[str] = ()) -> list[str]:
        """Add one request with its benign-rare skeleton keys; returns keys this account had
        to forget to stay within `MAX_TEMPLATES`."""
        self.first_seen_ms = min(self.first_seen_ms, f.timestamp_ms)
        self.last_seen_ms = max(self.last_seen_ms, f.timestamp_ms)
        self.requests += 1
        context = client_context(f)
        if context is not None:
            self.contexts.setdefault(context, set()).add(f.timestamp_ms // DAY_MS)
        self.agent_hours.setdefault(f.user_agent, set()).add(f.timestamp_ms // HOUR_MS)
        self.params[param_signature(f)] += 1
        if topic is not None:
            self.topics[topic] += 1
        hour, minute = f.timestamp_ms // HOUR_MS, (f.timestamp_ms % HOUR_MS) // MINUTE_MS
        active = self.minutes.setdefault(hour, set())
        if minute not in active:
            active.add(minute)
            self.minutes_version += 1
        for key in keys:
            template = self.templates.setdefault(key, Template(f.timestamp_ms))
            template.last_ms = max(template.last_ms, f.timestamp_ms)
            template.count += 1
            if len(template.fillings) < MAX_FILLINGS:
                template.fillings.add(f.prompt_key)
        if len(self.templates) <= MAX_TEMPLATES:
            return []
        ordered = sorted(self.templates, key=lambda k: (self.templates[k].last_ms, k))
        forgotten = ordered[: len(self.templates) - MAX_TEMPLATES]
        for key in forgotten:
            del self.templates[key]
        return forgotten

    def prune(self, cutoff_ms: int) -> tuple[list[str], list[str]]:
        """Drop days, hours and skeletons before the window; returns the contexts and the
        skeleton keys no longer used."""
        day, hour = cutoff_ms // DAY_MS, cutoff_ms // HOUR_MS
        for days in self.contexts.values():
            days.difference_update([d for d in days if d < day])
        for hours in self.agent_hours.values():
            hours.difference_update([h for h in hours if h < hour])
        gone = [c for c, days in self.contexts.items() if not days]
        for context in gone:
            del self.contexts[context]
        for agent in [a for a, hours in self.agent_hours.items() if not hours]:
            del self.agent_hours[agent]
        for bucket in [b for b in self.minutes if b < hour]:
            del self.minutes[bucket]
            self.minutes_version += 1
        stale = [k for k, t in self.templates.items() if t.last_ms < cutoff_ms]
        for key in stale:
            del self.templates[key]
        return gone, stale

    def to_json(self) -> dict[str, Any]:
        return {
            "first_seen_ms": self.first_seen_ms,
            "last_seen_ms": self.last_seen_ms,
            "requests": self.requests,
            "contexts": {c: sorted(d) for c, d in self.contexts.items()},
            "agent_hours": {a: sorted(h) for a, h in self.agent_hours.items()},
            "params": dict(self.params),
            "topics": {str(t): n for t, n in self.topics.items()},
            "templates": {k: t.to_json() for k, t in self.templates.items()},
            "minutes": {str(h): sorted(m) for h, m in self.minutes.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccountProfile:
        return cls(
            data["first_seen_ms"],
            data["last_seen_ms"],
            data["requests"],
            {c: set(d) for c, d in data["contexts"].items()},
            {a: set(h) for a, h in data["agent_hours"].items()},
            Counter(data["params"]),
            Counter({int(t): n for t, n in data["topics"].items()}),
            {k: Template.from_json(t) for k, t in data.get("templates", {}).items()},
            {int(h): set(m) for h, m in data.get("minutes", {}).items()},
        )


def _unpost(postings: dict[str, set[str]], key: str, account: str) -> None:
    """Take `account` off the posting `key`, and the posting away once it is empty."""
    accounts = postings.get(key)
    if accounts is not None:
        accounts.discard(account)
        if not accounts:
            del postings[key]


class Profiles(Mapping[str, AccountProfile]):
    """Every account's profile, with postings: accounts per client context, per benign-rare
    skeleton or parameter signature (`keys`), and per user agent per hour (the active hours of
    the window: timing overlap's population)."""

    def __init__(self) -> None:
        self._profiles: dict[str, AccountProfile] = {}
        self._context_accounts: dict[str, set[str]] = defaultdict(set)
        self._key_accounts: dict[str, set[str]] = defaultdict(set)
        self._hour_accounts: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))

    def __getitem__(self, account_id: str) -> AccountProfile:
        return self._profiles[account_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._profiles)

    def __len__(self) -> int:
        return len(self._profiles)

    def __contains__(self, account_id: object) -> bool:
        return account_id in self._profiles

    def context_users(self, context: str) -> set[str]:
        """Accounts that used this client context in the window (the live population's
        share of it, `population.LiveCounts`)."""
        return self._context_accounts.get(context, set())

    def key_users(self, key: str) -> set[str]:
        """Accounts that used this benign-rare skeleton (or, keyed "p|…", signature)."""
        return self._key_accounts.get(key, set())

    @property
    def active_hours(self) -> int:
        """Hours of the window in which any account was active."""
        return len(self._hour_accounts)

    def observe(
        self, f: EventFeatures, topic: int | None, keys: Iterable[str] = ()
    ) -> tuple[str, int]:
        """Add one request with its benign-rare skeleton keys; returns its (user agent, hour)
        posting key."""
        profile = self._profiles.setdefault(
            f.account_id, AccountProfile(f.timestamp_ms, f.timestamp_ms)
        )
        keys = list(keys)
        for key in profile.observe(f, topic, keys):
            _unpost(self._key_accounts, key, f.account_id)
        for key in keys:
            self._key_accounts[key].add(f.account_id)
        context = client_context(f)
        if context is not None:
            self._context_accounts[context].add(f.account_id)
        hour = f.timestamp_ms // HOUR_MS
        self._hour_accounts[hour][f.user_agent].add(f.account_id)
        return f.user_agent, hour

    def prune(self, touched: Iterable[str], cutoff_ms: int) -> None:
        """Forget days and hours before `cutoff_ms` (touched accounts and postings only)."""
        for account in touched:
            contexts, keys = self._profiles[account].prune(cutoff_ms)
            for context in contexts:
                _unpost(self._context_accounts, context, account)
            for key in keys:
                _unpost(self._key_accounts, key, account)
        for hour in [h for h in self._hour_accounts if h < cutoff_ms // HOUR_MS]:
            del self._hour_accounts[hour]

    def forget(self, accounts: Iterable[str]) -> None:
        """Drop the accounts' profiles and the context and skeleton postings that name them
        (retired accounts, quiet for longer than the window: `CampaignLinker._retire`; their
        hour postings went with the window, `prune`)."""
        for account in accounts:
            profile = self._profiles.pop(account, None)
            if profile is None:
                continue
            for context in profile.contexts:
                _unpost(self._context_accounts, context, account)
            for key in profile.templates:
                _unpost(self._key_accounts, key, account)

    def partners(
        self,
        account: str,
        hour_keys: Iterable[tuple[str, int]],
        max_posting: int,
        keys: Iterable[str] = (),
    ) -> set[str]:
        """Accounts on the same client context, on the same user agent in an hour the batch
        touched, or on one of `keys` (benign-rare skeletons and parameter signatures the batch
        used). Union-find needs connectivity, not every pair, so a crowded posting gives only
        its first `max_posting` members."""
        postings = [self._context_accounts[c] for c in self._profiles[account].contexts]
        postings += [self._key_accounts[k] for k in keys if k in self._key_accounts]
        postings += [self._hour_accounts.get(h, {}).get(agent, set()) for agent, h in hour_keys]
        partners: set[str] = set()
        for posting in postings:
            crowded = len(posting) > max_posting
            partners.update(heapq.nsmallest(max_posting, posting) if crowded else posting)
        partners.discard(account)
        return partners

    def to_json(self) -> dict[str, Any]:
        return {a: p.to_json() for a, p in self._profiles.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Profiles:
        """Profiles saved by `to_json`; postings are rebuilt from them."""
        profiles = cls()
        for account, saved in data.items():
            profile = profiles._profiles[account] = AccountProfile.from_json(saved)
            for context in profile.contexts:
                profiles._context_accounts[context].add(account)
            for agent, hours in profile.agent_hours.items():
                for hour in hours:
                    profiles._hour_accounts[hour][agent].add(account)
            for key in profile.templates:
                profiles._key_accounts[key].add(account)
        return profiles
