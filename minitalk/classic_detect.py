"""Finding the variant a plain sender speaks, from its signals alone (serve --classic --detect).

Pure: symbols in, (variant, text) out. Every reading is followed at once and checked only where
it could end a message; only the right one gives valid UTF-8 there (see ``VariantFinder``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from minitalk.classic_format import ClassicFormat, value_of


def _decode(symbols: list[int], zero: int, *, msb_first: bool) -> bytes:
    """The bytes that whole groups of 8 ``symbols`` carry when ``zero`` is the 0 symbol."""
    values = bytearray()
    for start in range(0, len(symbols) - 7, 8):
        values.append(value_of([s ^ zero for s in symbols[start : start + 8]], msb_first=msb_first))
    return bytes(values)


def _plausible(data: bytes) -> float | None:
    """How much ``data`` looks like text (the share of printable or white-space characters),
    or None if it is not UTF-8, or holds a NUL (no plain message does: the NUL ends it)."""
    if b"\0" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text:
        return 1.0
    return sum(char.isprintable() or char in "\t\n\r" for char in text) / len(text)


@dataclass(frozen=True, slots=True)
class Held:
    """A message a reading ended, held: its variant, its text, the signal it ended at, and
    whether the byte after it is awaited (a NUL may follow a prefix-ended message)."""

    fmt: ClassicFormat
    data: bytes
    end: int
    awaits_nul: bool


@dataclass(slots=True)
class VariantFinder:
    """Reads one sender's message in every variant at once, as its signals arrive, and says
    which reading ends here with valid UTF-8 (``add``), or at its silence (``at_silence``).

    Bit order and signal mapping show in the text: text read in the wrong bit order, or with
    the signals swapped, is almost never valid UTF-8 (and a NUL byte, 8 signals of the 0 kind,
    tells the mapping). A length prefix shows in its value: only in the right reading does the
    message end where the prefix said (a text's first bytes read as a length are millions).
    Each reading is checked only where it could end (each byte boundary, for a NUL; the very
    signal the prefix announces), so following them all costs little per signal. A newline
    terminator is not looked for: it cannot be told from a newline inside a NUL-ended text.
    """

    max_message: int
    symbols: list[int] = field(default_factory=list)
    expected: dict[int, list[ClassicFormat]] = field(default_factory=dict)
    nul_spent: set[int] = field(default_factory=set)  # mappings whose first NUL came and went
    empty_nul: int | None = None  # a NUL was the first byte: an empty message, or not a NUL
    # A reading that ended a message, held (the variant, the text, where it ended): one that
    # its length prefix ended, for one byte (a NUL may follow it: 11 of 19 prefixed clients
    # send one, and it is then its end, not the next message's first byte); or a NUL-ended
    # one no longer than a 64-bit prefix, while a prefix reading may still explain more (a
    # length's zero byte reads as a NUL).
    held: Held | None = None
    # Symbols after a held message that were not its NUL: the next message's first byte.
    leftover: list[int] = field(default_factory=list)

    @property
    def too_long(self) -> bool:
        return len(self.symbols) > 8 * (self.max_message + 2) + 64

    def add(self, symbol: int) -> tuple[ClassicFormat, bytes] | None:
        """One more signal; the variant and text of the message it ends, if it ends one
        (then ``leftover`` holds the signals that began the next one, if any)."""
        self.symbols.append(symbol)
        count = len(self.symbols)
        found = _best(self._prefixed_ends(count)) or _best(self._nul_ends(count))
        end = count
        held = self.held
        if held is not None and held.awaits_nul and found is None:
            if count < held.end + 8:
                return None
            found, end = self._nul_after(held), (count if self.leftover == [] else held.end)
        elif found is not None and _waits_for_nul(found[0]):
            self.held = Held(found[0], found[1], count, awaits_nul=True)  # see _nul_after
            return None
        if found is None:
            if held is not None and count >= 64 and not self.expected:
                return self._release(held)  # no prefix reading explained more
            return None
        if end <= _SHORT and (count < 64 or self.expected):
            # As short as a length prefix: its NUL may be a length's zero byte, its length
            # the first bytes of a longer one. Held while a prefix reading may explain more.
            self.held = Held(found[0], found[1], end, awaits_nul=False)
            self.leftover = []
            return None
        self.held = None
        return found

    def _release(self, held: Held) -> tuple[ClassicFormat, bytes]:
        """Let a held message go; the signals after it began the next one."""
        self.held = None
        self.leftover = self.symbols[held.end :]
        return held.fmt, held.data

    def _nul_after(self, held: Held) -> tuple[ClassicFormat, bytes]:
        """The byte after a message its prefix ended: its NUL, or the next message's start
        (then in ``leftover``)."""
        self.held = None
        self.leftover = []
        if self.symbols[held.end :].count(held.fmt.zero_symbol) == 8:
            return replace(held.fmt, terminator=b"\0"), held.data
        self.leftover = self.symbols[held.end :]
        return held.fmt, held.data

    def _nul_ends(self, count: int) -> list[tuple[ClassicFormat, bytes]]:
        """The readings a NUL ends here: the first NUL of a mapping, at a byte boundary."""
        found: list[tuple[ClassicFormat, bytes]] = []
        if count % 8:
            return found
        last = self.symbols[-8:]
        for zero in (0, 1):
            if zero in self.nul_spent or last.count(zero) != 8:
                continue
            self.nul_spent.add(zero)  # the first NUL ends it in this mapping, or nothing does
            if count == 8:
                self.empty_nul = zero if self.empty_nul is None else self.empty_nul
                continue
            for msb_first in (True, False):
                data = _decode(self.symbols[:-8], zero, msb_first=msb_first)
                found.append((ClassicFormat(msb_first=msb_first, zero_symbol=zero), data))
        return found

    def _prefixed_ends(self, count: int) -> list[tuple[ClassicFormat, bytes]]:
        """The readings whose length prefix ends the message here."""
        if count in (32, 64):
            self._expect(count)
        found: list[tuple[ClassicFormat, bytes]] = []
        for fmt in self.expected.pop(count, ()):
            found.extend(self._prefixed(fmt))
        return found

    def at_silence(self) -> tuple[ClassicFormat, bytes] | None:
        """The sender went silent: an empty message (a lone NUL), or one with no terminator."""
        if self.held is not None:  # nothing more explained it (or no NUL followed it)
            return self._release(self.held)
        count = len(self.symbols)
        if count == 8 and self.empty_nul is not None:
            return ClassicFormat(zero_symbol=self.empty_nul), b""
        if count == 0 or count % 8:
            return None
        found = [
            (
                ClassicFormat(msb_first=msb_first, zero_symbol=zero, terminator=b""),
                _decode(self.symbols, zero, msb_first=msb_first),
            )
            for zero in (0, 1)
            for msb_first in (True, False)
        ]
        return _best(found)

    def _expect(self, width: int) -> None:
        """The prefix has arrived in a ``width``-bit reading: note where each reading of it
        would end the message."""
        for zero in (0, 1):
            bits = [s ^ zero for s in self.symbols]
            for prefix_msb in (True, False):
                length = value_of(bits, msb_first=prefix_msb)
                if length > self.max_message + 1:
                    continue
                for msb_first in (True, False):
                    for terminator, counts in ((b"", False), (b"\0", False), (b"\0", True)):
                        if counts and length == 0:
                            continue
                        size = length + (1 if terminator and not counts else 0)
                        fmt = ClassicFormat(
                            msb_first=msb_first,
                            zero_symbol=zero,
                            terminator=terminator,
                            length_bits=width,
                            length_msb_first=None if prefix_msb == msb_first else prefix_msb,
                            length_counts_terminator=counts,
                        )
                        self.expected.setdefault(width + 8 * size, []).append(fmt)

    def _prefixed(self, fmt: ClassicFormat) -> list[tuple[ClassicFormat, bytes]]:
        data = _decode(self.symbols[fmt.length_bits :], fmt.zero_symbol, msb_first=fmt.msb_first)
        if fmt.terminator:
            if not data.endswith(fmt.terminator):
                return []
            data = data[:-1]
        return [(fmt, data)]


def _waits_for_nul(fmt: ClassicFormat) -> bool:
    """A message its length prefix ended, with no NUL: one may still follow."""
    return bool(fmt.length_bits) and not fmt.terminator


# A message that ends within this many signals may be the start of a 64-bit length prefix
# and a byte: --detect holds it while a prefix reading may still explain more.
_SHORT = 72


def _best(found: list[tuple[ClassicFormat, bytes]]) -> tuple[ClassicFormat, bytes] | None:
    """The reading that looks most like text; on a tie, the commoner variant (MSB first,
    SIGUSR1 = 0, no prefix, the prefix in the text's order, the NUL not counted)."""
    scored = []
    for fmt, data in found:
        score = _plausible(data)
        if score is not None:
            commoner = (
                fmt.msb_first,
                fmt.zero_symbol == 0,
                fmt.length_bits == 0,
                fmt.length_msb_first is None,
                not fmt.length_counts_terminator,
                bool(fmt.terminator),
            )
            scored.append(((score, commoner), fmt, data))
    if not scored:
        return None
    _, fmt, data = max(scored, key=lambda entry: entry[0])
    return fmt, data


def pinning_flags(fmt: ClassicFormat) -> str:
    """The options that select ``fmt`` (on serve --classic and send --classic)."""
    flags = []
    if not fmt.msb_first:
        flags.append("--bit-order lsb")
    if fmt.zero_symbol:
        flags.append("--zero usr2")
    if not fmt.terminator:
        flags.append("--end none")
    elif fmt.terminator == b"\n":
        flags.append("--end newline")
    if fmt.length_bits:
        flags.append(f"--length-prefix {fmt.length_bits}")
        if fmt.length_msb_first is not None:
            flags.append(f"--prefix-order {'msb' if fmt.length_msb_first else 'lsb'}")
        if fmt.length_counts_terminator:
            flags.append("--length-counts-end")
    return " ".join(flags) or "none (the default variant)"
