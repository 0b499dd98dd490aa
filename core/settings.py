"""Settings shared by every command: environment variables `DG_*`, then an optional TOML file.

Precedence (highest first): explicit arguments, `DG_*` environment variables, the TOML file named by
`DG_CONFIG` (default `distillguard.toml` in the working directory, when present), built-in defaults.
Secrets are `SecretStr`, so they never appear in logs, reprs or `distillguard config` output; each
can also be read from a file named by `DG_<NAME>_FILE` (`DG_API_TOKEN_FILE`: a mounted secret),
so it need not sit in the environment or the TOML file.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)


def _toml_path() -> Path:
    return Path(os.environ.get("DG_CONFIG", "distillguard.toml"))


class SecretFiles(PydanticBaseSettingsSource):
    """Every secret from the file that `DG_<NAME>_FILE` names (one trailing newline dropped).
    Setting both `DG_<NAME>` and `DG_<NAME>_FILE` is refused: which one wins would be a guess."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = f"DG_{field_name.upper()}_FILE"
        path = os.environ.get(variable)
        if path is None or not _is_secret(field):
            return None, field_name, False
        if f"DG_{field_name.upper()}" in os.environ:
            raise SettingsError(f"set DG_{field_name.upper()} or {variable}, not both")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise SettingsError(f"{variable}: cannot read {path}: {error.strerror}") from None
        return text.removesuffix("\n").removesuffix("\r"), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(field, name)
            if value is not None:
                values[name] = value
        return values


def _is_secret(field: FieldInfo) -> bool:
    return field.annotation in (SecretStr, SecretStr | None)


class Settings(BaseSettings):
    """Every knob DistillGuard reads; see `distillguard.example.toml` for a documented example."""

    model_config = SettingsConfigDict(env_prefix="DG_", extra="ignore")

    store: Literal["embedded", "server"] = "embedded"
    data_dir: Path = Path(".distillguard")
    # `clickhouses://host:9440` (the server's tcp_port_secure) for TLS, verified against the
    # system's CAs or `clickhouse_ca_file`; a client certificate (mutual TLS) with
    # `clickhouse_cert_file` and `clickhouse_key_file` (its password, if the key is encrypted,
    # in `clickhouse_key_password`).
    clickhouse_url: str = "clickhouse://127.0.0.1:19000"
    clickhouse_password: SecretStr | None = None
    clickhouse_ca_file: Path | None = None
    clickhouse_cert_file: Path | None = None
    clickhouse_key_file: Path | None = None
    clickhouse_key_password: SecretStr | None = None
    # A ClickHouse cluster (the name in its servers' `remote_servers`; needs `store = "server"`):
    # the schema is created ON CLUSTER, each table a ReplicatedReplacingMergeTree per shard under
    # a Distributed table sharded by account. `clickhouse_url` may then list several of its
    # servers (`clickhouse://h1:9000,h2:9000`) to fail over. Unset: one server.
    clickhouse_cluster: str | None = None
    database: str = "distillguard"
    kafka_bootstrap: str = "127.0.0.1:19092"
    topic: str = "api-requests"
    dlq_topic: str = "api-requests.dlq"
    consumer_group: str = "distillguard"
    # The largest message the topic takes (the broker's default message.max.bytes is 1 MiB; this
    # leaves room for the key and headers). HTTP ingest into Kafka dead-letters bigger events.
    kafka_max_message_bytes: int = 1_000_000
    # A secured cluster: TLS (`SSL`, `SASL_SSL`) verified against the system's CAs or
    # `kafka_ssl_cafile` (a client certificate with `kafka_ssl_certfile`/`_keyfile`), and SASL
    # (`SASL_SSL`, or `SASL_PLAINTEXT` inside a trusted network) with a user and password.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    redact_prompts: Literal["none", "hash", "truncate"] = "none"
    redact_truncate_chars: int = 200
    max_event_bytes: int = 8 * 1024 * 1024
    max_request_bytes: int = 32 * 1024 * 1024  # HTTP ingest body limit (413 beyond)
    ingest_to: Literal["kafka", "pipeline"] | None = None  # default: kafka with a server store
    # HTTP ingest's `format=mapping:NAME` reads the field mapping NAME.toml from this folder (a
    # caller never names a server path); unset: HTTP ingest takes the built-in formats only.
    mapping_dir: Path | None = None
    batch_size: int = 5000
    # A worker's poll that brought less than a full batch keeps polling for up to this many ms
    # after its first record, so a steady trickle is processed in batches of a quarter second's
    # traffic instead of a few records each: what a batch costs whatever its size is paid less
    # often, for up to this much more latency; a backlog fills its batches at once and never
    # waits (`streaming.kafka.KafkaSource.poll`). 0: each poll returns whatever has arrived.
    poll_linger_ms: int = Field(default=250, ge=0)
    # Threads a worker or linker process gives its math libraries (numpy's and FAISS's BLAS,
    # FAISS's OpenMP). One: those processes scale out as processes, and on a shared machine the
    # libraries' idle threads spin on cores the other roles need (2 cores, the pipeline
    # benchmark's backlog: linker CPU 12.5-15.4 -> 7.9-9.7 s). 0: the libraries' own default.
    compute_threads: int = Field(default=1, ge=0)
    # The Prometheus /metrics and /healthz listener of the worker, linker and alert dispatcher:
    # loopback unless a scraper elsewhere must reach it (e.g. 0.0.0.0 in a container).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    detector: Literal["extraction", "volume"] = "extraction"
    # Which prompts are embedded: every one (`full`), or on a CPU running MiniLM itself only
    # suspects' and a sample (`tiered`, `detectors.fusion.tiering`); `off`: no embedding signal.
    embedding_tier: Literal["tiered", "full", "off"] = "full"
    # Which embedder: MiniLM itself, or its static wordpiece table (`detectors.embedding`,
    # ~70 times cheaper on a CPU, so every prompt can be embedded there). `auto`: MiniLM on a
    # GPU or when tiered, the static table on a CPU (`detectors.registry.embedding_model`).
    embedding_model: Literal["auto", "minilm", "static"] = "auto"
    embedding_max_tokens: int = 64  # MiniLM truncation: 156 prompts/s at 64 tokens, 99 at 128
    # MiniLM's CPU threads in each process (0: one per core). Set 1 when several workers share
    # the cores: their OpenMP threads waiting at barriers cost more than they gain (busy 2-core
    # machine: 15 ms a prompt on one thread, 26 on two). The vectors are the same either way.
    embedding_threads: int = Field(default=0, ge=0)
    target_fpr: float = 0.001  # share of benign accounts the extraction threshold may flag
    api_token: SecretStr | None = None
    # Client addresses (IPs or CIDR networks) whose `X-Forwarded-For` is believed; empty: none,
    # so the audit log and the failed-auth limit see the TCP peer.
    trusted_proxies: list[str] = []
    auth_failures_per_minute: int = 30  # failed tokens per client address before 429
    # Networks (CIDR) a webhook URL may resolve into although they are loopback, private,
    # link-local or cloud metadata; empty: those are refused (SSRF).
    webhook_allow_networks: list[str] = []
    webhook_secret: SecretStr | None = None
    webhook_retry_base_s: float = 2.0  # first retry after 1-2 s, doubling up to an hour
    # Alerts sent once (services/webhooks.py): how long a dispatcher's claim holds an alert (a
    # dead dispatcher's alerts wait this long), and how long a claimant waits for concurrent
    # claims before reading them back (dispatcher clocks must agree within half of it).
    alert_lease_s: float = 30.0
    alert_settle_s: float = 0.5
    # Forensic reports: the Ed25519 private key that signs each report's manifest (PKCS#8 PEM,
    # or the base64 of its 32 raw bytes; `distillguard report keygen` makes one). Unset: reports
    # are written unsigned and say so (services/signing.py explains why no key is invented).
    report_signing_key: SecretStr | None = None
    # Alerts start at this label (`suspicious`: the early-warning tier too; an escalation to
    # `extraction` re-sends the same alert as an update) and link to this dashboard (unset: none).
    alert_min_label: Literal["suspicious", "extraction"] = "extraction"
    dashboard_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    watermark_key: SecretStr | None = None  # provenance: the serving watermark's secret
    watermark_gamma: float = 0.25  # green share of the vocabulary
    watermark_delta: float = 2.0  # logit bonus of green tokens
    watermark_context: int = 1  # previous tokens that seed each green list

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} needs "
                "kafka_sasl_username and kafka_sasl_password"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_path())
        return (init_settings, env_settings, SecretFiles(settings_cls), toml)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
