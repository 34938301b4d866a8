"""Verdict codewords survive a one-symbol slip: no single loss, duplication, insertion or
substitution turns one valid verdict into another (minitalk 1.0 read a shifted ACK as
TOO_LARGE and a shifted RESEND as OUT_OF_ORDER)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from minitalk.protocol.verdicts import (
    VERDICT_BITS,
    Verdict,
    detail_bits,
    parse_detail,
    parse_verdict,
    verdict_bits,
)

Word = tuple[int, ...]


def slips(word: Word) -> set[Word]:
    """Every window of VERDICT_BITS symbols a reader can see when one symbol of ``word`` is
    lost (any symbol may follow), duplicated or inserted (the window cut back), or replaced."""
    n = len(word)
    seen: set[Word] = set()
    for i in range(n):
        for x in (0, 1):
            seen.add(word[:i] + word[i + 1 :] + (x,))  # lost, then whatever comes next
            seen.add(((*word[:i], x, *word[i:]))[:n])  # inserted (a duplicate is one of these)
        seen.add((*word[:i], 1 - word[i], *word[i + 1 :]))
    seen.discard(word)
    return seen


def _word(verdict: Verdict) -> Word:
    return tuple(verdict_bits(verdict))


def _value(word: Word) -> int:
    return int("".join(map(str, word)), 2)


def test_every_verdict_round_trips() -> None:
    for verdict in Verdict:
        assert len(verdict_bits(verdict)) == VERDICT_BITS
        assert parse_verdict(_value(_word(verdict))) is verdict


def test_no_single_slip_turns_one_verdict_into_another() -> None:
    for verdict in Verdict:
        for seen in slips(_word(verdict)):
            assert parse_verdict(_value(seen)) is None, (verdict, seen)


def test_runs_of_one_symbol_and_their_slips_are_no_verdict() -> None:
    for symbol in (0, 1):
        run = (symbol,) * VERDICT_BITS
        for seen in {run} | slips(run):
            assert parse_verdict(_value(seen)) is None, seen


def test_the_old_code_and_complement_words_failed_this() -> None:
    """The check above can fail: ACK 0001_1110 of minitalk 1.0 shifted by one read as its
    TOO_LARGE 0011_1100 (a shift left, then a 0 after it)."""
    old_ack, old_too_large = (0, 0, 0, 1, 1, 1, 1, 0), (0, 0, 1, 1, 1, 1, 0, 0)
    assert old_too_large in slips(old_ack)


@given(st.sampled_from(list(Verdict)), st.integers(0, 7), st.sampled_from(["lost", "extra"]))
def test_a_slipped_verdict_stream_reads_as_garbled(verdict: Verdict, at: int, kind: str) -> None:
    """The same property, seen as the sender sees it: 8 answers to 8 polls, one of which
    was lost or came twice."""
    stream = verdict_bits(verdict)
    if kind == "lost":
        stream = stream[:at] + stream[at + 1 :] + [0]
    else:
        stream = [*stream[:at], stream[at], *stream[at:]]
    seen = _value(tuple(stream[:VERDICT_BITS]))
    assert parse_verdict(seen) in (None, verdict)


def test_codewords_are_pairwise_distinct_and_not_trivial() -> None:
    words = [_word(v) for v in Verdict]
    assert len(set(words)) == len(words)
    for a, b in itertools.combinations(words, 2):
        assert sum(x != y for x, y in zip(a, b, strict=True)) >= 3


@given(st.integers(0, 2**32 - 1))
def test_detail_round_trips(value: int) -> None:
    assert parse_detail(_value(tuple(detail_bits(value)))) == value
