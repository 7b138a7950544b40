"""The Erasure-Signature header: what `sign` writes, and what `verify` accepts and refuses."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from connectors import signing

SECRET, BODY, NOW = b"shared-secret", b'{"user_id":"7"}', 1_800_000_000


def test_sign_writes_the_timestamp_and_the_hmac_of_timestamp_dot_body() -> None:
    """The header is t=UNIX,v1=HEX where HEX is HMAC-SHA256 of `UNIX.BODY` under the secret."""
    expected = hmac.new(SECRET, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signing.sign(SECRET, BODY, now=NOW) == f"t={NOW},v1={expected}"


def test_verify_accepts_a_fresh_signature_and_returns_its_time() -> None:
    """A header signed now, over the same body, verifies."""
    assert signing.verify(SECRET, BODY, signing.sign(SECRET, BODY, now=NOW), now=NOW + 10) == NOW


def test_verify_accepts_any_of_several_signatures() -> None:
    """While a secret is rotated a header may carry a v1 per secret: one that matches is enough."""
    old = signing.sign(b"old-secret", BODY, now=NOW)
    header = old + "," + signing.sign(SECRET, BODY, now=NOW).split(",")[1]
    assert signing.verify(SECRET, BODY, header, now=NOW) == NOW


@pytest.mark.parametrize("moment", [NOW + signing.TOLERANCE_SECONDS + 1, NOW - signing.TOLERANCE_SECONDS - 1])
def test_verify_refuses_a_replay_or_a_clock_far_off(moment: int) -> None:
    """A header whose t is further than the tolerance from now is refused."""
    with pytest.raises(signing.SignatureError, match="replay"):
        signing.verify(SECRET, BODY, signing.sign(SECRET, BODY, now=NOW), now=moment)


@pytest.mark.parametrize("secret, body", [(b"another-secret", BODY), (SECRET, b'{"user_id":"8"}'), (SECRET, b"")])
def test_verify_refuses_another_secret_or_body(secret: bytes, body: bytes) -> None:
    """A signature under another secret, or over another body, does not match."""
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(secret, body, signing.sign(SECRET, BODY, now=NOW), now=NOW)


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=soon,v1=abc", f"t={NOW}"])
def test_verify_refuses_a_missing_or_malformed_header(header: str | None) -> None:
    """No header, no t, a t that is no number, or no v1: refused."""
    with pytest.raises(signing.SignatureError):
        signing.verify(SECRET, BODY, header, now=NOW)


def test_a_moved_timestamp_breaks_the_signature() -> None:
    """Changing t to look fresh (a replay dressed up) breaks the HMAC, which covers t."""
    header = signing.sign(SECRET, BODY, now=NOW).replace(f"t={NOW}", f"t={NOW + 1000}")
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(SECRET, BODY, header, now=NOW + 1000)
