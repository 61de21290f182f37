"""Gift codes: unguessable, grouped for reading, typed back in any case and spacing."""

from __future__ import annotations

import re

from billing_api.gifts import codes


def test_codes_are_four_groups_of_four_from_the_unambiguous_alphabet() -> None:
    made = {codes.new_code() for _ in range(2000)}
    assert len(made) == 2000
    for code in made:
        assert re.fullmatch(r"[A-HJKMNP-Z2-9]{4}(-[A-HJKMNP-Z2-9]{4}){3}", code), code
    assert not set("".join(made)) & set("01OIL")


def test_what_a_user_types_is_read_back_in_the_stored_form() -> None:
    assert codes.normalise("abcd efgh-jkmn pqrs") == "ABCD-EFGH-JKMN-PQRS"
    assert codes.normalise("ABCDEFGHJKMNPQRS") == "ABCD-EFGH-JKMN-PQRS"


def test_what_cannot_be_a_code_is_none() -> None:
    for typed in (
        "",
        "ABCD-EFGH-JKMN-PQR",
        "ABCD-EFGH-JKMN-PQRST",
        "ABCD-EFGH-JKMN-PQR0",
        "ñ" * 16,
    ):
        assert codes.normalise(typed) is None, typed


def test_the_redeem_link_carries_the_code() -> None:
    url = codes.redeem_url("https://cinema.example/account/", "ABCD-EFGH-JKMN-PQRS")
    assert url == "https://cinema.example/account/gifts?code=ABCD-EFGH-JKMN-PQRS"
