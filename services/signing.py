"""Signed report manifests (Ed25519) and their verification.

A report's `manifest.json` lists the SHA-256 of every file; on its own anyone who edits a file
can regenerate it. So the manifest's exact bytes are signed with the deployment's Ed25519 key
(`DG_REPORT_SIGNING_KEY`: a PKCS#8 PEM private key, or the base64 of its 32 raw bytes) into
`manifest.sig`, a small JSON document: the signature (base64), the public key and its
fingerprint (SHA-256 of the 32 raw public-key bytes, hex), and the SHA-256 of the manifest as
signed, which only serves to say *what* changed (the manifest or the signature) when the
signature fails. The manifest itself names the public key too, so the key is covered by the
signature and printed in the report.

Without a configured key a report is written UNSIGNED, and says so in the manifest, the HTML and
on stderr, rather than signed by a key generated on the spot: a key created silently beside the
reports is readable by whoever can edit them, so its signature would prove nothing to a court,
yet look as if it did. A legal team expects either a signature by a key whose custody the
organisation answers for, or a plain statement that there is none.

`verify_report` re-checks everything and names each change: a listed file modified or removed,
a file added, the manifest or the signature altered, a signature by another key than the one
expected. Anyone can check the signature without DistillGuard, with OpenSSL 3:
`jq -r .signature manifest.sig | base64 -d > sig.bin; jq -r .public_key_pem manifest.sig >
key.pem; openssl pkeyutl -verify -pubin -inkey key.pem -rawin -in manifest.json -sigfile sig.bin`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import SecretStr

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
ALGORITHM = "Ed25519"
KEY_SETTING = "DG_REPORT_SIGNING_KEY"
UNSIGNED_REASON = f"no report signing key is configured ({KEY_SETTING})"


class SigningKeyError(ValueError):
    """The configured signing key is not an Ed25519 private key in a form we read."""


def load_signing_key(secret: SecretStr | None) -> Ed25519PrivateKey | None:
    """The configured private key (PKCS#8 PEM, or base64 of the 32 raw bytes); None when unset."""
    if secret is None or not secret.get_secret_value().strip():
        return None
    text = secret.get_secret_value().strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as error:
            raise SigningKeyError(f"{KEY_SETTING} is not a readable PEM private key") from error
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{KEY_SETTING} must be an Ed25519 key, not {key_kind(key)}")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise SigningKeyError(f"{KEY_SETTING} is neither PEM nor base64") from error
    if len(raw) != 32:
        raise SigningKeyError(f"{KEY_SETTING} in base64 must hold 32 bytes, not {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def key_kind(key: object) -> str:
    return type(key).__name__.removeprefix("_").replace("PrivateKey", "")


def new_signing_key_pem() -> bytes:
    """A fresh Ed25519 private key as unencrypted PKCS#8 PEM (`report keygen`)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_info(key: Ed25519PrivateKey | Ed25519PublicKey) -> dict[str, str]:
    """What a report prints about its key: algorithm, raw public key (base64), its PEM and the
    fingerprint (SHA-256 of the raw public key, hex)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "algorithm": ALGORITHM,
        "public_key": base64.b64encode(raw).decode(),
        "public_key_pem": pem.decode(),
        "public_key_fingerprint": hashlib.sha256(raw).hexdigest(),
    }


def signing_block(key: Ed25519PrivateKey | None) -> dict[str, str | None]:
    """The manifest's `signing` entry: the key that signs it, or why nothing does."""
    if key is None:
        return {"algorithm": None, "unsigned_reason": UNSIGNED_REASON}
    return public_key_info(key) | {"signature_file": SIGNATURE}


def sign_manifest(folder: Path, key: Ed25519PrivateKey) -> dict[str, str]:
    """Sign `folder/manifest.json`'s exact bytes into `folder/manifest.sig`; returns it."""
    manifest = (folder / MANIFEST).read_bytes()
    document = public_key_info(key) | {
        "signed_file": MANIFEST,
        "signed_sha256": hashlib.sha256(manifest).hexdigest(),
        "signature": base64.b64encode(key.sign(manifest)).decode(),
    }
    (folder / SIGNATURE).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return document


@dataclass
class Verification:
    """What `verify_report` found. `problems`: one entry per change, `{file, change, detail}`
    with change one of modified, removed, added, tampered."""

    folder: str
    signed: bool = False
    signature_valid: bool = False
    public_key_fingerprint: str | None = None
    unsigned_reason: str | None = None
    artifacts_checked: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        """Every file as listed and, when signed, the signature good."""
        return not self.problems

    @property
    def verified(self) -> bool:
        """Intact and signed: the only state a legal team can rely on."""
        return self.intact and self.signed and self.signature_valid

    def problem(self, file: str, change: str, detail: str) -> None:
        self.problems.append({"file": file, "change": change, "detail": detail})

    def to_dict(self) -> dict:
        return asdict(self) | {"intact": self.intact, "verified": self.verified}


def verify_report(folder: Path, expected_fingerprint: str | None = None) -> Verification:
    """Check `manifest.sig` against `manifest.json`, and every listed file's SHA-256; name each
    change. `expected_fingerprint` (the key's fingerprint as published by whoever signs) also
    rules out a report re-signed with another key, and makes a missing signature a failure."""
    result = Verification(folder=str(folder))
    path = folder / MANIFEST
    if not path.is_file():
        result.problem(MANIFEST, "removed", "the manifest is missing: nothing can be checked")
        return result
    raw = path.read_bytes()
    try:
        manifest = orjson.loads(raw)
        listing = manifest["artifacts"]
        names = [entry["file"] for entry in listing]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        result.problem(MANIFEST, "tampered", "the manifest is not a DistillGuard manifest")
        return result
    _check_signature(folder, raw, manifest, result, expected_fingerprint)
    _check_listing(manifest, result)
    for entry in listing:
        _check_artifact(folder, entry, result)
    result.artifacts_checked = len(listing)
    known = {*names, MANIFEST, SIGNATURE}
    for extra in sorted(p.name for p in folder.iterdir() if p.name not in known):
        result.problem(extra, "added", "not listed in the manifest")
    return result


def _check_signature(
    folder: Path, raw: bytes, manifest: dict, result: Verification, expected: str | None
) -> None:
    signing = manifest.get("signing") or {}
    signature_path = folder / SIGNATURE
    result.signed = bool(signing.get("algorithm"))
    result.public_key_fingerprint = signing.get("public_key_fingerprint")
    if not result.signed:
        result.unsigned_reason = signing.get("unsigned_reason") or "the manifest names no key"
        if signature_path.exists():
            result.problem(SIGNATURE, "added", "a signature beside a manifest that names no key")
        if expected:
            result.problem(MANIFEST, "tampered", f"expected a signature by key {expected}: none")
        return
    if not signature_path.is_file():
        result.problem(SIGNATURE, "removed", "the manifest names a key but its signature is gone")
        return
    try:
        document = orjson.loads(signature_path.read_bytes())
        signature = base64.b64decode(document["signature"], validate=True)
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(signing["public_key"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error):
        result.problem(SIGNATURE, "tampered", "the signature file is unreadable")
        return
    fingerprint = public_key_info(public)["public_key_fingerprint"]
    if fingerprint != signing.get("public_key_fingerprint"):
        result.problem(MANIFEST, "tampered", "the key's fingerprint does not match the key")
    if expected and fingerprint != expected.lower().removeprefix("sha256:"):
        result.problem(
            MANIFEST, "tampered", f"signed by key {fingerprint}, not the expected {expected}"
        )
    try:
        public.verify(signature, raw)
    except InvalidSignature:
        if hashlib.sha256(raw).hexdigest() != document.get("signed_sha256"):
            result.problem(MANIFEST, "tampered", "the manifest changed after it was signed")
        else:
            result.problem(SIGNATURE, "tampered", "the signature does not match the manifest")
        return
    result.signature_valid = True


def _check_listing(manifest: dict, result: Verification) -> None:
    """The manifest's own hash of its file list (`report_sha256`) still matches the list."""
    listing = orjson.dumps(manifest["artifacts"], option=orjson.OPT_SORT_KEYS)
    if hashlib.sha256(listing).hexdigest() != manifest.get("report_sha256"):
        result.problem(MANIFEST, "tampered", "the file list does not match the report's hash")


def _check_artifact(folder: Path, entry: dict, result: Verification) -> None:
    name = entry["file"]
    path = folder / name
    if Path(name).name != name or not path.is_file():
        result.problem(name, "removed", "listed in the manifest, missing from the folder")
    elif hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        result.problem(name, "modified", "its SHA-256 differs from the manifest's")
