"""ClickHouse server backend over the native protocol (clickhouse-driver)."""

from __future__ import annotations

import ssl
import struct
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as DriverError
from clickhouse_driver.errors import TypeMismatchError

from storage.base import Row, RowsRejected, Store, StoreError
from storage.schema import TABLES, Table, checked_cluster_name, cluster_statements

# What clickhouse-driver's encoders raise for a value that does not fit its column.
_ENCODING_ERRORS = (TypeError, ValueError, OverflowError, AttributeError, struct.error)

DROP_PARTITION_WAIT_S = 60.0  # for every replica to drop a partition (retention) on a cluster
# Query settings on a cluster, so that it keeps the contract of one server:
CLUSTER_SETTINGS: dict[str, Any] = {
    # an INSERT into a Distributed table returns once every shard stored its rows (by default
    # it returns at once and forwards them later): what was written can be read back;
    "insert_distributed_sync": 1,
    # every client reads and writes the first live replica of each shard, whichever server it
    # is connected to, so it reads what it (or another client) wrote there, not a replica that
    # may still be fetching it.
    "load_balancing": "in_order",
    "prefer_localhost_replica": 0,
}


# scheme → (TLS, default port): the native protocol, plain or on the server's tcp_port_secure.
SCHEMES = {"clickhouse": (False, 9000), "tcp": (False, 9000), "clickhouses": (True, 9440)}
URL_FORM = "clickhouse://host:port[,host:port...] (clickhouses:// for TLS)"
# What the client reads from a server that requires mutual TLS and refuses its certificate (none,
# or one from a CA it does not trust): TLS 1.3 refuses after the handshake, so the server's
# alert, or only an EOF when the server closed the connection before the client read the alert.
CLIENT_CERTIFICATE_REFUSED = (
    "CERTIFICATE_REQUIRED",
    "UNKNOWN_CA",
    "BAD_CERTIFICATE",
    "UNSUPPORTED_CERTIFICATE",
    "EOF occurred in violation of protocol",
)


def split_url(url: str) -> tuple[str, list[tuple[str, int]], str, str]:
    """`clickhouse[s]://[user[:password]@]host[:port][,host[:port]...]` → (scheme,
    [(host, port)], user, password); `clickhouses` is TLS. More than one host: the others are
    tried, in order, when one is down."""
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    if parts.scheme not in SCHEMES or not hostlist:
        raise ValueError(f"expected {URL_FORM}, got {url!r}")
    hosts = []
    for item in hostlist.split(","):
        one = urlsplit(f"//{item}")
        try:
            port = one.port or SCHEMES[parts.scheme][1]
        except ValueError:
            port = 0
        if not one.hostname or not port:
            raise ValueError(f"expected {URL_FORM}, got {url!r}")
        hosts.append((one.hostname, port))
    user, _, password = userinfo.partition(":")
    return parts.scheme, hosts, unquote(user or "default"), unquote(password)


def _check_client_certificate(
    cert_file: str | Path, key_file: str | Path | None, key_password: str | None
) -> None:
    """Load the client certificate and key once, here, as the driver will: a missing file, a
    key of another certificate or a wrong password is then a configuration error that says so,
    not an `[SSL] PEM lib` at the first query (nor OpenSSL's password prompt on a terminal)."""
    for path in [cert_file] if key_file is None else [cert_file, key_file]:
        try:
            Path(path).read_bytes()
        except OSError as error:
            raise ValueError(
                f"cannot read the ClickHouse client certificate or key {path}: {error.strerror}"
            ) from None
    try:
        ssl.create_default_context().load_cert_chain(
            cert_file, key_file, key_password or (lambda: "")
        )
    except ssl.SSLError as error:
        key = key_file or f"the key in {cert_file}"
        raise ValueError(
            f"the ClickHouse client certificate {cert_file} and {key} are not a certificate and "
            f"its private key, or the key's password is wrong or missing ({error.reason or error})"
        ) from None


def _address(host: str, port: int) -> str:
    """`host:port` as `remote()` and messages write it (an IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
    """A ClickHouse server (18.16 or current) reached at a `clickhouse://host:port` URL, or a
    cluster of them (`cluster`, the name in the servers' `remote_servers`): then each table is
    a Distributed table over replicated per-shard tables (`storage.schema.cluster_statements`),
    and the URL may name several of its servers (`clickhouse://h1:p1,h2:p2`) to fail over.
    `clickhouses://` speaks TLS, verifying the server's certificate and name against the
    system's CAs or `ca_file`, and presents a client certificate (`cert_file`, its key in
    `key_file` or in the same PEM, `key_password` if encrypted) to a server that requires
    mutual TLS."""

    backend = "server"

    def __init__(
        self,
        url: str = "clickhouse://127.0.0.1:19000",
        database: str = "distillguard",
        password: str | None = None,
        connect_timeout: float = 5.0,
        send_receive_timeout: float = 60.0,
        cluster: str | None = None,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        key_password: str | None = None,
    ) -> None:
        super().__init__(database)
        scheme, hosts, user, url_password = split_url(url)
        addresses = [f"{host}:{port}" for host, port in hosts]
        self.url = f"{scheme}://{','.join(addresses)}"  # no credentials
        self.cluster = checked_cluster_name(cluster) if cluster else None
        settings: dict[str, Any] = {"use_client_time_zone": False}
        if self.cluster is not None:
            settings.update(CLUSTER_SETTINGS)
        # (kept for the per-shard connections of schema changes on a cluster)
        self._connection = {
            "user": user,
            "password": password or url_password,
            "connect_timeout": connect_timeout,
            "send_receive_timeout": send_receive_timeout,
            "settings": settings,
        }
        # clickhouse-driver's names (its ssl.SSLContext: load_verify_locations, load_cert_chain)
        tls = {"ca_certs": ca_file, "certfile": cert_file, "keyfile": key_file}
        if not SCHEMES[scheme][0] and any(tls.values()):
            raise ValueError(
                f"a CA file or client certificate needs a clickhouses:// URL (TLS), got {self.url}"
            )
        if cert_file:
            _check_client_certificate(cert_file, key_file, key_password)
        elif key_file or key_password:
            raise ValueError("a client key needs its certificate (clickhouse_cert_file)")
        if SCHEMES[scheme][0]:
            self._connection |= {"secure": True, "verify": True, "keypass": key_password}
            self._connection |= {name: str(path) for name, path in tls.items() if path}
        self._client = Client(
            host=hosts[0][0],
            port=hosts[0][1],
            alt_hosts=",".join(addresses[1:]) or None,
            **self._connection,
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
                raise StoreError(f"clickhouse server {self.url}: {exc}{self._hint(exc)}") from exc
            except _ENCODING_ERRORS as exc:
                if params is None or not kwargs.get("columnar"):
                    raise
                # The driver encodes an INSERT's values on this side: one that does not fit its
                # column fails here, the INSERT is cut short and the server stores none of it.
                self._client.disconnect()
                raise RowsRejected(f"clickhouse server {self.url}: {exc!r}") from exc

    def _hint(self, error: BaseException) -> str:
        """What to check when the server may have refused the client's certificate (the
        driver passes on only the TLS error's message)."""
        if not self._connection.get("secure") or not any(
            sign in str(error) for sign in CLIENT_CERTIFICATE_REFUSED
        ):
            return ""
        if "certfile" in self._connection:
            return " (if the server requires mutual TLS: does it trust clickhouse_cert_file's CA?)"
        return " (if the server requires mutual TLS: set clickhouse_cert_file)"

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

    # --- on a cluster: DDL ON CLUSTER, partitions of the per-shard tables ---------------------
    def _ddl(self, statement: str) -> None:
        if self.cluster is None:
            super()._ddl(statement)
            return
        for step in cluster_statements(statement, self.cluster):
            if step.each_shard:
                self._on_each_shard(step.sql.replace("{db}", self.database))
            else:
                self.execute(step.sql)

    def _servers(self) -> list[tuple[int, str, int]]:
        """(shard, host, port) of every server of the cluster, replicas in their order."""
        rows = self.query(
            "SELECT shard_num, host_address, port FROM system.clusters "
            "WHERE cluster = %(cluster)s ORDER BY shard_num, replica_num",
            {"cluster": self.cluster},
        )
        if not rows:
            raise StoreError(f"{self.url}: the server knows no cluster {self.cluster!r}")
        return [(int(r["shard_num"]), r["host_address"], int(r["port"])) for r in rows]

    def _on_each_shard(self, sql: str) -> None:
        """Run `sql` (a replicated table's ALTER) on the first replica of every shard that
        answers; the shard's other replicas apply it from the replication log."""
        shards: dict[int, list[tuple[str, int]]] = {}
        for shard, host, port in self._servers():
            shards.setdefault(shard, []).append((host, port))
        for shard, replicas in shards.items():
            errors = []
            for host, port in replicas:
                client = Client(host=host, port=port, **self._connection)
                try:
                    client.execute(sql)
                    break
                except (DriverError, OSError, EOFError) as exc:
                    errors.append(f"{_address(host, port)}: {exc}")
                finally:
                    client.disconnect()
            else:
                raise StoreError(f"cluster {self.cluster} shard {shard}: {'; '.join(errors)}")

    def partitions(self, table_name: str) -> list[str]:
        if self.cluster is None:
            return super().partitions(table_name)
        self.table(table_name)
        rows = self.query(
            "SELECT DISTINCT partition FROM cluster(%(cluster)s, system, parts) "
            "WHERE database = %(db)s AND table = %(table)s AND active ORDER BY partition",
            {"cluster": self.cluster, "db": self.database, "table": TABLES[table_name].local_name},
        )
        return [str(r["partition"]).strip("'") for r in rows]

    def _drop_partition(self, table_name: str, partition: str) -> None:
        if self.cluster is None:
            super()._drop_partition(table_name, partition)
            return
        # One replica of each shard drops it (not ON CLUSTER: see `cluster_statements`), the
        # others follow from the replication log: return once no replica holds it, so no read
        # sees the dropped days. (Making the ALTER wait for every replica,
        # replication_alter_partitions_sync = 2, can deadlock 18.16 with a replica fetching a
        # part of that partition from the one dropping it.)
        local = TABLES[table_name].local_name
        self._on_each_shard(f"ALTER TABLE {self.database}.{local} DROP PARTITION {partition}")
        replicas = ",".join(_address(host, port) for _, host, port in self._servers())
        deadline = time.monotonic() + DROP_PARTITION_WAIT_S
        while True:
            # every server (each address its own "shard" here); one that is down is skipped:
            # it drops the partition from the replication log when it is back.
            (left,) = self.query(
                "SELECT count() AS n FROM remote(%(replicas)s, system, parts) "
                "WHERE database = %(db)s AND table = %(table)s AND partition_id = %(partition)s "
                "AND active SETTINGS skip_unavailable_shards = 1",
                {"replicas": replicas, "db": self.database, "table": local, "partition": partition},
            )
            if not left["n"]:
                return
            if time.monotonic() > deadline:
                raise StoreError(
                    f"{self.url}: partition {partition} of {table_name} still on "
                    f"{left['n']} part(s) {DROP_PARTITION_WAIT_S:.0f} s after it was dropped"
                )
            time.sleep(0.1)

    def close(self) -> None:
        self._client.disconnect()
