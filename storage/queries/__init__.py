"""Every query DistillGuard runs against its tables, outside the store's own mechanics
(migrations, inserts, retention): the one place with SQL. One module per resource; each
function takes a `Store` and plain parameters and returns typed rows.

Values always go through `%(name)s` placeholders (escaped by clickhouse-driver's escaper on both
backends), and the SQL runs unchanged on ClickHouse 18.16 and on chDB. Reads use `FINAL` where a
replaced row version would otherwise count twice.
"""

from __future__ import annotations

from storage.queries.access import audit_page, token_by_hash, token_by_id
from storage.queries.accounts import (
    Checkpoint,
    account_checkpoint,
    busiest_accounts,
    flagged_accounts,
    ranked_accounts,
)
from storage.queries.alerts import (
    acknowledge_alert,
    alert,
    alert_history,
    alert_page,
    alert_rows,
    due_alerts,
    existing_alert_ids,
    live_alert_claims,
    webhook_rows,
)
from storage.queries.benchmarks import drop_database, fill_synthetic, recreate, server_version
from storage.queries.clusters import cluster, cluster_members, cluster_page, clusters_touching
from storage.queries.dispositions import (
    allowlisted,
    current_dispositions,
    disposition_history,
    every_disposition,
    false_positive_accounts,
    stored_events,
)
from storage.queries.events import (
    account_event_page,
    answered_prompts,
    dead_letter_reasons,
    events_of,
    fingerprints_after,
    response_texts,
)
from storage.queries.paging import RowPage
from storage.queries.verdicts import (
    account_verdicts,
    extraction_accounts,
    verdict_page,
    verdicts_of,
)

__all__ = [
    "Checkpoint",
    "RowPage",
    "account_checkpoint",
    "account_event_page",
    "account_verdicts",
    "acknowledge_alert",
    "alert",
    "alert_page",
    "alert_history",
    "alert_rows",
    "allowlisted",
    "answered_prompts",
    "audit_page",
    "busiest_accounts",
    "cluster",
    "cluster_members",
    "cluster_page",
    "clusters_touching",
    "current_dispositions",
    "dead_letter_reasons",
    "disposition_history",
    "drop_database",
    "due_alerts",
    "events_of",
    "every_disposition",
    "existing_alert_ids",
    "extraction_accounts",
    "false_positive_accounts",
    "fill_synthetic",
    "fingerprints_after",
    "flagged_accounts",
    "live_alert_claims",
    "ranked_accounts",
    "recreate",
    "response_texts",
    "server_version",
    "stored_events",
    "token_by_hash",
    "token_by_id",
    "verdict_page",
    "verdicts_of",
    "webhook_rows",
]
