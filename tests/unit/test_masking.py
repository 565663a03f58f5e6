"""Learner emails in logs and alerts: ``mask_email`` (one address) and ``mask_emails`` (every address in a text)."""

from __future__ import annotations

import time

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.provisional import domains

from license_notifications.observability import EmailRenderer, mask_email, mask_emails

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("jane.doe@example.com", "j***@example.com"),
        ("o'brien@x.org", "o***@x.org"),
        ('"john doe"@example.com', '"***@example.com'),
        ('"a@b"@example.com', '"***@example.com'),  # the domain follows the last "@"
        ("user@localhost", "u***@localhost"),
        (None, "<no email>"),
        ("", "<no email>"),
        ("no-at-sign", "***"),
    ],
)
def test_mask_email_keeps_the_first_character_and_the_domain(email, masked):
    assert mask_email(email) == masked
    assert EmailRenderer()(email) == masked


def test_full_emails_when_asked():
    assert EmailRenderer(full=True)("jane.doe@example.com") == "jane.doe@example.com"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("bad alias jane.doe@example.com.", "bad alias j***@example.com."),
        ("user o'brien@x.org unknown", "user o***@x.org unknown"),
        ("to: user@localhost", "to: u***@localhost"),
        ('to "john doe"@example.com, bob@example.com', 'to "***@example.com, b***@example.com'),
        ('john."doe"@example.com', "j***@example.com"),
        ('"esc\\"aped"@example.com', '"***@example.com'),
        ("a+tag@example.com", "a***@example.com"),
        ("{x}|~^`#$&*=?/!@example.com", "{***@example.com"),
        ('{"email":"jane@example.com"}', '{"email":"j***@example.com"}'),
        ('key="jane@example.com"', 'key="j***@example.com"'),
        ("<jane@example.com>", "<j***@example.com>"),
        ("u@[192.0.2.1] v@[IPv6:2001:db8::1]", "u***@[192.0.2.1] v***@[IPv6:2001:db8::1]"),
        ("?email=jane%40example.com&x=1", "?***%40example.com&x=1"),
        ("Ünïcødé@例え.jp", "Ü***@例え.jp"),
        ("x@ab@example.com", "x@a***@example.com"),  # the address is ab@example.com
        ("no address here, just @mentions and 3.13", "no address here, just @mentions and 3.13"),
    ],
)
def test_mask_emails_masks_every_email_like_token(text, masked):
    assert mask_emails(text) == masked


# Surrounding text: anything but "@" (so that the only address is the one embedded).
surroundings = st.text(alphabet=st.characters(exclude_characters="@"), max_size=20)
dot_atoms = st.lists(st.text(alphabet=ATEXT, min_size=1, max_size=12), min_size=1, max_size=3).map(".".join)
quoted = st.text(alphabet=st.characters(codec="ascii", min_codepoint=32, max_codepoint=126), max_size=12).map(
    lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
)
local_parts = st.one_of(dot_atoms, quoted, st.tuples(dot_atoms, quoted).map(".".join))
hosts = st.one_of(
    domains(),
    st.sampled_from(["localhost", "mailhost", "[192.0.2.1]", "[IPv6:2001:db8::1]"]),
)


def assert_masked(text: str, local: str, domain: str, masked: str) -> None:
    assume(local.strip("*"))  # "**@x" masks to "****@x", which contains it
    assert f"{local}@{domain}" not in masked
    assert f"{local}@" not in masked, f"{text!r} -> {masked!r}"
    assert "***@" in masked


@given(prefix=surroundings, email=st.emails(), suffix=surroundings)
def test_no_generated_email_survives_masking(prefix, email, suffix):
    text = f"{prefix}{email}{suffix}"
    local, _, domain = email.rpartition("@")
    assert_masked(text, local, domain, mask_emails(text))


@given(prefix=surroundings, local=local_parts, domain=hosts, suffix=surroundings)
def test_no_dotted_quoted_or_dotless_email_survives_masking(prefix, local, domain, suffix):
    text = f"{prefix}{local}@{domain}{suffix}"
    assert_masked(text, local, domain, mask_emails(text))


@given(local=local_parts, domain=hosts)
def test_mask_email_of_any_address(local, domain):
    assert mask_email(f"{local}@{domain}") == f"{local[0]}***@{domain}"


@pytest.mark.parametrize(
    "text",
    [
        "a" * 100_000,  # a long token without "@"
        '"' * 100_000,
        '."' * 50_000,  # a chain of quoted strings
        '"a".' * 30_000,
        "x@" + "a" * 100_000 + "@",
        "x@a" + "." * 100_000,
        "%40" * 30_000,
        "jane@example.com " * 10_000,
    ],
    ids=["run", "quotes", "dot-quotes", "quoted-chain", "between-ats", "dots", "encoded-ats", "many-addresses"],
)
def test_masking_takes_linear_time(text):
    started = time.perf_counter()
    mask_emails(text)
    assert time.perf_counter() - started < 2
