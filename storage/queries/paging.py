"""Pages of rows for list views: one row more than asked for says whether another page exists,
so no list ever needs a second `count()` query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from storage.base import Store

R = TypeVar("R")


@dataclass(frozen=True)
class RowPage(Generic[R]):
    """Up to `limit` rows starting at `offset`; `next_offset` is None on the last page."""

    rows: list[R]
    limit: int
    offset: int
    next_offset: int | None


def fetch_page(store: Store, sql: str, params: dict[str, Any], limit: int, offset: int) -> RowPage:
    """One page of `sql`'s rows (`sql` is ordered and has no LIMIT of its own)."""
    rows = store.query(
        sql + " LIMIT %(offset)s, %(limit)s", {**params, "offset": offset, "limit": limit + 1}
    )
    more = len(rows) > limit
    return RowPage(rows[:limit], limit, offset, offset + limit if more else None)
