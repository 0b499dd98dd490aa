"""ClickHouse server backend over the native protocol (clickhouse-driver)."""

from __future__ import annotations

import struct
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as DriverError
from clickhouse_driver.errors import TypeMismatchError

from storage.base import Row, RowsRejected, Store, StoreError
from storage.schema import Table

# What clickhouse-driver's encoders raise for a value that does not fit its column.
_ENCODING_ERRORS = (TypeError, ValueError, OverflowError, AttributeError, struct.error)


def _plain(value: Any) -> Any:
    """Driver values to the shapes both backends return (DateTime → epoch seconds)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp())
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class ClickHouseServer(Store):
    """A ClickHouse server (18.16 or current) reached at a `clickhouse://host:port` URL."""

    backend = "server"

    def __init__(
        self,
        url: str = "clickhouse://127.0.0.1:19000",
        database: str = "distillguard",
        password: str | None = None,
        connect_timeout: float = 5.0,
        send_receive_timeout: float = 60.0,
    ) -> None:
        super().__init__(database)
        parts = urlsplit(url)
        if parts.scheme not in ("clickhouse", "tcp") or not parts.hostname:
            raise ValueError(f"expected clickhouse://host:port, got {url!r}")
        self.url = f"{parts.scheme}://{parts.hostname}:{parts.port or 9000}"  # no credentials
        self._client = Client(
            host=parts.hostname,
            port=parts.port or 9000,
            user=unquote(parts.username or "default"),
            password=password or unquote(parts.password or ""),
            connect_timeout=connect_timeout,
            send_receive_timeout=send_receive_timeout,
            settings={"use_client_time_zone": False},
        )
        self._lock = threading.Lock()

    def _run(self, sql: str, params: Any = None, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return self._client.execute(sql, params, **kwargs)
            except TypeMismatchError as exc:
                self._client.disconnect()
                raise RowsRejected(f"clickhouse server {self.url}: {exc}") from exc
            except (DriverError, OSError, EOFError) as exc:
                self._client.disconnect()
                raise StoreError(f"clickhouse server {self.url}: {exc}") from exc
            except _ENCODING_ERRORS as exc:
                if params is None or not kwargs.get("columnar"):
                    raise
                # The driver encodes an INSERT's values on this side: one that does not fit its
                # column fails here, the INSERT is cut short and the server stores none of it.
                self._client.disconnect()
                raise RowsRejected(f"clickhouse server {self.url}: {exc!r}") from exc

    def _query(self, sql: str, params: dict[str, Any] | None) -> list[Row]:
        rows, columns = self._run(sql, params or {}, with_column_types=True)
        names = [name for name, _ in columns]
        return [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in rows]

    def _execute(self, sql: str, params: dict[str, Any] | None) -> None:
        self._run(sql, params or None)

    def _insert_rows(self, table: Table, rows: list[Row]) -> None:
        # Columnar, with DateTime as raw epoch seconds: the driver's fastest insert path.
        columns = [[row[name] for row in rows] for name in table.column_names]
        self._run(table.insert_sql(self.database, "VALUES"), columns, columnar=True)

    def close(self) -> None:
        self._client.disconnect()
