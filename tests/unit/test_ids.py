"""Reservation tokens: short, [0-9a-z], time-ordered, unique; a keyed token is the same for the same key."""

from __future__ import annotations

import re
import time
import uuid

from inventory import ids
from inventory.keys import KeySpace


def test_a_token_is_24_characters_and_names_its_partition() -> None:
    keys = KeySpace("fs", 16)
    token = keys.token_in(ids.new_token(), 11)
    assert re.fullmatch(r"[0-9a-z]{24}", token) and keys.of_token(token).index == 11
    assert ids.token_of(ids.reservation_id(token), "r") == token


def test_tokens_are_unique_and_ordered_by_their_millisecond() -> None:
    first = [ids.new_token() for _ in range(20_000)]
    assert len(set(first)) == len(first)
    time.sleep(0.002)
    later = ids.new_token()
    assert max(first) < later
    assert len({t[9:] for t in first}) == len(first)  # the random part alone already differs


def test_a_keyed_token_depends_on_user_and_key_only() -> None:
    token = ids.token_for_key("alice", "k1")
    assert re.fullmatch(r"[0-9a-z]{21}", token)
    assert token == ids.token_for_key("alice", "k1")
    assert len({token, ids.token_for_key("bob", "k1"), ids.token_for_key("alice", "k2")}) == 3


def test_a_holds_member_with_a_uuid_user_fits_a_listpack_entry() -> None:
    """'<token>|<qty>|<user>' within Redis's 64-byte zset-max-listpack-value for quantities below 10."""
    token = KeySpace("fs", 4096).token_in(ids.new_token(), 4095)
    assert len(f"{token}|9|{uuid.uuid4()}".encode()) <= 64
