"""Storage: one interface (`Store`), two backends running the same SQL.

The backends load on first use (PEP 562 `__getattr__`): code that only reads the interface or
the queries (`provenance.attribution`) does not pull in chDB (a 181 MB wheel) or the server's
driver, so it runs where neither is installed (`scripts/device-provenance`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from storage.base import Store, StoreError

if TYPE_CHECKING:
    from core.settings import Settings
    from storage.embedded import EmbeddedClickHouse
    from storage.server import ClickHouseServer

_BACKENDS = {"EmbeddedClickHouse": "storage.embedded", "ClickHouseServer": "storage.server"}


def __getattr__(name: str) -> Any:
    if name in _BACKENDS:
        import importlib

        return getattr(importlib.import_module(_BACKENDS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ClickHouseServer", "EmbeddedClickHouse", "Store", "StoreError", "open_store"]


def open_store(settings: Settings, database: str | None = None, migrate: bool = True) -> Store:
    """The store the settings name (`DG_STORE=embedded|server`), migrated and ready; a context
    manager too (`with open_store(settings) as store:` closes it)."""
    from storage.embedded import EmbeddedClickHouse
    from storage.server import ClickHouseServer

    database = database or settings.database
    store: Store
    if settings.store == "server":
        password, key_password = settings.clickhouse_password, settings.clickhouse_key_password
        store = ClickHouseServer(
            settings.clickhouse_url,
            database=database,
            password=password.get_secret_value() if password else None,
            cluster=settings.clickhouse_cluster,
            ca_file=settings.clickhouse_ca_file,
            cert_file=settings.clickhouse_cert_file,
            key_file=settings.clickhouse_key_file,
            key_password=key_password.get_secret_value() if key_password else None,
        )
    elif settings.clickhouse_cluster:
        raise StoreError("DG_CLICKHOUSE_CLUSTER needs the server store (DG_STORE=server)")
    else:
        store = EmbeddedClickHouse(settings.data_dir / "chdb", database=database)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()  # the caller never gets it to close
            raise
    return store
