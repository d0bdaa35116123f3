"""AES-GCM field encryption beside Fernet: the value format, mixed columns, rotation both ways,
wrong keys, altered values, column binding, configuration and the key generator."""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from crm.config import ConfigError, Settings
from crm.consent.models import ConsentEvent
from crm.consent.services import verify_evidence
from crm.extensions import db as _db
from crm.hcps.models import HCP
from crm.security.crypto import AESGCM_TOKEN_PREFIX, DecryptionError, Keyring, generate_key
from tests.conftest import TEST_KEYS
from tests.test_keys_rotate import _by_pk, _every_encrypted_column

FERNET_A = TEST_KEYS[0]  # what the test app writes with
AES_B = generate_key()
AES_C = generate_key("aes-gcm")


@pytest.fixture
def use_keys(app, monkeypatch):
    def use(*keys: str) -> None:
        monkeypatch.setitem(app.config, "CRM_ENCRYPTION_KEYS", list(keys))
        monkeypatch.setitem(app.extensions, "crm_keyring", Keyring(list(keys)))

    return use


def _blob(token: str) -> bytes:
    return base64.urlsafe_b64decode(token[len(AESGCM_TOKEN_PREFIX):])


def _with_blob(blob: bytes) -> str:
    return AESGCM_TOKEN_PREFIX + base64.urlsafe_b64encode(blob).decode()


# -- the format ------------------------------------------------------------------------------------

def test_an_aes_gcm_value_has_the_versioned_format_and_a_fresh_nonce_each_time():
    ring = Keyring([AES_B])
    one, two = ring.encrypt("hcps.email", "a@b.c"), ring.encrypt("hcps.email", "a@b.c")
    assert one.startswith("A1.") and two.startswith("A1.") and one != two
    b1, b2 = _blob(one), _blob(two)
    assert b1[:4] == b2[:4]  # the same key id
    assert b1[4:16] != b2[4:16]  # 96-bit nonces, never reused
    assert len(b1) == 4 + 12 + len(b"a@b.c") + 16  # key id, nonce, ciphertext, tag: no padding
    assert b"a@b.c" not in b1
    assert ring.decrypt("hcps.email", one) == ring.decrypt("hcps.email", two) == "a@b.c"
    assert ring.decrypt("hcps.email", ring.encrypt("hcps.email", "")) == ""
    assert ring.decrypt("hcps.phone", ring.encrypt("hcps.phone", "Zoë ☎ 555")) == "Zoë ☎ 555"


def test_fernet_values_never_look_like_aes_gcm_values():
    token = Keyring([FERNET_A]).encrypt("hcps.email", "a@b.c")
    assert token.startswith("gAAAAA") and not token.startswith(AESGCM_TOKEN_PREFIX)


def test_old_fernet_and_new_aes_gcm_values_both_decrypt_under_a_mixed_keyring():
    old = Keyring([FERNET_A]).encrypt("hcps.email", "old@b.c")
    mixed = Keyring([AES_B, FERNET_A])
    new = mixed.encrypt("hcps.email", "new@b.c")
    assert new.startswith("A1.")  # new writes follow the newest key's scheme
    assert mixed.decrypt("hcps.email", old) == "old@b.c"
    assert mixed.decrypt("hcps.email", new) == "new@b.c"
    assert mixed.is_current(new) and not mixed.is_current(old)
    assert (mixed.key_index(new, "hcps.email"), mixed.key_index(old, "hcps.email")) == (0, 1)
    # a Fernet key put back in front: AES-GCM values still read, new writes are Fernet again
    back = Keyring([Fernet.generate_key().decode(), AES_B, FERNET_A])
    assert back.decrypt("hcps.email", new) == "new@b.c" and not back.is_current(new)
    assert back.encrypt("hcps.email", "x").startswith("gAAAAA")


def test_a_wrong_or_missing_key_does_not_decrypt():
    token = Keyring([AES_B]).encrypt("hcps.email", "a@b.c")
    with pytest.raises(DecryptionError, match="does not decrypt under any configured key"):
        Keyring([AES_C]).decrypt("hcps.email", token)
    with pytest.raises(DecryptionError, match="does not decrypt under any configured key"):
        Keyring([FERNET_A]).decrypt("hcps.email", token)
    fernet_token = Keyring([FERNET_A]).encrypt("hcps.email", "a@b.c")
    with pytest.raises(DecryptionError, match="does not decrypt under any configured key"):
        Keyring([AES_B]).decrypt("hcps.email", fernet_token)


@pytest.mark.parametrize("where", ["key id", "nonce", "ciphertext", "tag"])
def test_an_altered_value_does_not_decrypt(where):
    ring = Keyring([AES_B])
    blob = bytearray(_blob(ring.encrypt("hcps.email", "a@b.c")))
    at = {"key id": 0, "nonce": 4, "ciphertext": 16, "tag": len(blob) - 1}[where]
    blob[at] ^= 0x01
    with pytest.raises(DecryptionError, match="does not decrypt"):
        ring.decrypt("hcps.email", _with_blob(bytes(blob)))


@pytest.mark.parametrize("token", ["A1.", "A1.!!!not base64!!!", "A1." + base64.urlsafe_b64encode(b"short").decode(),
                                   "A1.é", "not a token at all", ""])
def test_a_malformed_value_is_a_decryption_error_not_a_crash(token):
    with pytest.raises(DecryptionError):
        Keyring([AES_B, FERNET_A]).decrypt("hcps.email", token)


def test_an_aes_gcm_value_is_bound_to_its_column(db, factory, use_keys):
    use_keys(AES_B)
    h = factory.hcp(email="dr.who@clinic.example", phone="+1 555 123 4567")
    raw_email = db.execute(text("SELECT email FROM hcps WHERE id = :i"), {"i": h.id}).scalar_one()
    assert raw_email.startswith("A1.") and "clinic" not in raw_email
    db.execute(text("UPDATE hcps SET phone = email WHERE id = :i"), {"i": h.id})
    db.expire_all()
    with pytest.raises(DecryptionError, match="hcps.phone: value does not decrypt"):
        db.get(HCP, h.id).phone  # noqa: B018
    assert Keyring([AES_B]).decrypt("hcps.email", raw_email) == "dr.who@clinic.example"


# -- rotation --------------------------------------------------------------------------------------

def test_rotation_moves_every_column_from_fernet_to_aes_gcm(runner, db, factory, use_keys):
    clear = _every_encrypted_column(db, factory)  # written under the Fernet key
    hashes = {e.id: e.evidence_hash for e in db.query(ConsentEvent)}
    use_keys(AES_B, FERNET_A)
    # before the rotation: a mixed column, old Fernet values beside a new AES-GCM one, all readable
    newcomer = factory.hcp(email="new.hcp@clinic.example")
    db.flush()
    clear.update({(f"hcps.{c}", newcomer.id): getattr(newcomer, c) for c in ("email", "phone", "address_line")})
    db.expire_all()
    assert db.get(HCP, newcomer.id).email == "new.hcp@clinic.example"
    stored = _by_pk(db)
    assert stored[("hcps.email", newcomer.id)].startswith("A1.")
    assert all(stored[k].startswith("gAAAAA") for k in clear if k[1] != newcomer.id or k[0][:5] != "hcps.")

    result = runner.invoke(args=["crm", "keys", "rotate", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "consent_events.evidence: rotated 2, already current 0" in result.output
    assert "unreadable" not in result.output

    use_keys(AES_B)  # the Fernet key retired: everything reads under the AES-GCM key alone
    ring = Keyring([AES_B])
    stored = _by_pk(db)
    assert set(stored) == set(clear)
    for (name, pk), token in stored.items():
        assert token.startswith("A1.") and ring.is_current(token)
        assert ring.decrypt(name, token) == clear[(name, pk)]
    db.expire_all()
    for e in db.query(ConsentEvent):  # the append-only ledger let the re-encryption through, nothing else
        assert e.evidence_hash == hashes[e.id] and verify_evidence(e) is True

    again = runner.invoke(args=["crm", "keys", "rotate"])
    assert again.exit_code == 0 and "hcps.email: rotated 0" in again.output
    assert _by_pk(db) == stored


def test_rotation_from_one_aes_gcm_key_to_the_next(runner, db, factory, use_keys):
    use_keys(AES_B)
    h = factory.hcp(email="dr.aes@clinic.example", phone="+1 555 0100")
    db.flush()
    before = db.execute(text("SELECT email, phone FROM hcps WHERE id = :i"), {"i": h.id}).one()
    use_keys(AES_C, AES_B)
    result = runner.invoke(args=["crm", "keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "hcps.email: rotated 1" in result.output and "hcps.phone: rotated 1" in result.output
    after = db.execute(text("SELECT email, phone FROM hcps WHERE id = :i"), {"i": h.id}).one()
    ring_c = Keyring([AES_C])
    assert after.email != before.email and _blob(after.email)[:4] != _blob(before.email)[:4]
    assert ring_c.decrypt("hcps.email", after.email) == "dr.aes@clinic.example"
    assert ring_c.decrypt("hcps.phone", after.phone) == "+1 555 0100"


def test_rotation_reports_a_value_under_an_unknown_aes_gcm_key_and_leaves_it(runner, db, factory, use_keys):
    hcp_id = factory.hcp().id
    stranger = Keyring([generate_key()]).encrypt("hcps.phone", "+1 555 0199")
    db.execute(text("UPDATE hcps SET phone = :v WHERE id = :i"), {"v": stranger, "i": hcp_id})
    use_keys(AES_B, FERNET_A)
    result = runner.invoke(args=["crm", "keys", "rotate"])
    assert result.exit_code == 1
    assert "hcps.phone: rotated 0, already current 0, unreadable 1" in result.output
    assert "+1 555 0199" not in result.output
    assert db.execute(text("SELECT phone FROM hcps WHERE id = :i"), {"i": hcp_id}).scalar_one() == stranger


def test_rotation_does_not_move_a_value_into_the_wrong_column(runner, db, factory, use_keys):
    """A value copied from another column does not decrypt as this column's: reported, not re-encrypted."""
    hcp_id = factory.hcp().id
    db.execute(text("UPDATE hcps SET phone = email WHERE id = :i"), {"i": hcp_id})
    copied = db.execute(text("SELECT phone FROM hcps WHERE id = :i"), {"i": hcp_id}).scalar_one()
    use_keys(AES_B, FERNET_A)
    result = runner.invoke(args=["crm", "keys", "rotate"])
    assert result.exit_code == 1 and "hcps.phone: rotated 0, already current 0, unreadable 1" in result.output
    assert db.execute(text("SELECT phone FROM hcps WHERE id = :i"), {"i": hcp_id}).scalar_one() == copied


def test_bulk_writes_encrypt_each_value_on_its_own_under_the_newest_key(app, db, use_keys):
    from crm.db import bulk_parameters

    use_keys(AES_B, FERNET_A)
    table = _db.metadata.tables["hcps"]
    rows = [{"first_name": "A", "last_name": "B", "profession": "gp", "email": "same@clinic.example",
             "phone": None} for _ in range(3)]
    keys, params = bulk_parameters(table, rows, db.get_bind().dialect)
    emails = [p[keys.index("email")] for p in params]
    assert len(set(emails)) == 3 and all(e.startswith("A1.") for e in emails)
    assert {Keyring([AES_B]).decrypt("hcps.email", e) for e in emails} == {"same@clinic.example"}
    assert all(p[keys.index("phone")] is None for p in params)


# -- configuration and the key generator -----------------------------------------------------------

def test_settings_accept_fernet_and_aes_gcm_keys_and_refuse_others(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    both = f"{AES_B}, {FERNET_A}"
    assert Settings.from_env({"CRM_ENCRYPTION_KEYS": both}).encryption_keys == [AES_B, FERNET_A]
    # (an aesgcm key without its prefix is 32 bytes of base64, which is what a Fernet key is: accepted as one)
    for bad in ("aesgcm:", "aesgcm:" + base64.urlsafe_b64encode(b"x" * 16).decode(), "aesgcm:!!", "not-a-key"):
        with pytest.raises(ConfigError, match="neither a Fernet key nor aesgcm"):
            Settings.from_env({"CRM_ENCRYPTION_KEYS": bad})


def test_a_new_installation_generates_an_aes_gcm_key(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    keys = Settings.from_env({}).encryption_keys
    assert len(keys) == 1 and keys[0].startswith("aesgcm:")
    assert Settings.from_env({}).encryption_keys == keys  # kept under instance/, the same next start


def test_an_existing_fernet_key_file_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_INSTANCE_PATH", str(tmp_path))
    (tmp_path / "crm_encryption_keys.key").write_text(FERNET_A)
    assert Settings.from_env({}).encryption_keys == [FERNET_A]


def test_keys_generate_prints_a_usable_key(runner):
    aes = runner.invoke(args=["crm", "keys", "generate"])
    fernet = runner.invoke(args=["crm", "keys", "generate", "--scheme", "fernet"])
    assert aes.exit_code == 0 and fernet.exit_code == 0
    aes_key, fernet_key = aes.output.strip(), fernet.output.strip()
    assert aes_key.startswith("aesgcm:") and len(base64.urlsafe_b64decode(aes_key[7:])) == 32
    for key in (aes_key, fernet_key):
        ring = Keyring([key])
        assert ring.decrypt("hcps.email", ring.encrypt("hcps.email", "a@b.c")) == "a@b.c"
    assert runner.invoke(args=["crm", "keys", "generate", "--scheme", "rot13"]).exit_code == 2


# -- the NPPES import under an AES-GCM key ---------------------------------------------------------

def test_the_nppes_import_writes_aes_gcm_values_that_read_back_and_a_rotation_leaves_them(runner, db, use_keys):
    from sqlalchemy import select

    from crm.hcps.models import HCPIdentifier
    from crm.integrations.masterdata.importer import import_nppes_file
    from tests.masterdata_helpers import SAMPLE

    use_keys(AES_B, FERNET_A)
    run = import_nppes_file(db, None, SAMPLE)
    assert (run.status, run.created) == ("completed", 300)
    hcp = db.scalar(select(HCP).join(HCPIdentifier).where(HCPIdentifier.kind == "npi",
                                                            HCPIdentifier.value == "2260181591"))
    raw = db.execute(text("SELECT phone, address_line FROM hcps WHERE id = :i"), {"i": hcp.id}).one()
    assert raw.phone.startswith("A1.") and raw.address_line.startswith("A1.")
    assert Keyring([AES_B]).decrypt("hcps.phone", raw.phone) == "3269947784"
    db.expire_all()
    assert (hcp.phone, hcp.address_line) == ("3269947784", "72 Oak St")
    # everything the import wrote is already under the newest key: nothing to rotate
    result = runner.invoke(args=["crm", "keys", "rotate"])
    assert result.exit_code == 0 and "hcps.phone: rotated 0" in result.output
    assert "hcps.address_line: rotated 0" in result.output
