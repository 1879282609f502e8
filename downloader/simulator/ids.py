"""Deterministic, decodable UUIDs for simulated objects (pure).

A workspace of 50,000 bots must not keep a dictionary from every id to its object, so ids
*encode* their position: ``(bot index, recording index, part index)`` is packed into 56 bits,
scrambled with a keyed Feistel permutation (so ids look random and are not guessable from
one another) and placed in a version-4 UUID whose first bytes identify the seed and kind.
Decoding is the inverse; anything that does not decode is simply "not found".
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from enum import StrEnum

_HALF_BITS = 31
_HALF_MASK = (1 << _HALF_BITS) - 1
_ROUNDS = 4
_BOT_BITS = 32
_REC_BITS = 8
_PART_BITS = 16


class Kind(StrEnum):
    BOT = "bot"
    RECORDING = "recording"
    VIDEO_SEPARATE = "video_separate"
    PART = "part"
    MEETING_METADATA = "meeting_metadata"


@dataclass(frozen=True)
class Ref:
    """Where an object lives: bot index, recording index within the bot, part index."""

    bot: int
    recording: int = 0
    part: int = 0


class IdCodec:
    def __init__(self, seed: int) -> None:
        self._key = hashlib.sha256(f"recall-sim-ids:{seed}".encode()).digest()
        self._prefix = {kind: self._kind_prefix(kind) for kind in Kind}
        self._by_prefix = {prefix: kind for kind, prefix in self._prefix.items()}

    def encode(self, kind: Kind, ref: Ref) -> str:
        packed = (ref.bot << (_REC_BITS + _PART_BITS)) | (ref.recording << _PART_BITS) | ref.part
        scrambled = self._permute(packed, kind, decrypt=False)
        low = (0b10 << 62) | scrambled  # RFC 4122 variant bits
        return str(uuid.UUID(bytes=self._prefix[kind] + low.to_bytes(8, "big")))

    def decode(self, kind: Kind, text: str) -> Ref | None:
        try:
            raw = uuid.UUID(text).bytes
        except (ValueError, AttributeError, TypeError):
            return None
        if str(uuid.UUID(bytes=raw)) != text.lower() or self._by_prefix.get(raw[:8]) is not kind:
            return None
        low = int.from_bytes(raw[8:], "big")
        if low >> 62 != 0b10:
            return None
        packed = self._permute(low & ((1 << 62) - 1), kind, decrypt=True)
        if packed >> (_BOT_BITS + _REC_BITS + _PART_BITS):
            return None
        return Ref(
            bot=packed >> (_REC_BITS + _PART_BITS),
            recording=(packed >> _PART_BITS) & ((1 << _REC_BITS) - 1),
            part=packed & ((1 << _PART_BITS) - 1),
        )

    def _kind_prefix(self, kind: Kind) -> bytes:
        digest = bytearray(hashlib.sha256(self._key + kind.value.encode()).digest()[:8])
        digest[6] = 0x40 | (digest[6] & 0x0F)  # UUID version 4
        return bytes(digest)

    def _round(self, half: int, index: int, kind: Kind) -> int:
        # Keyed per kind, so a recording and its video_separate do not share id suffixes.
        person = f"{kind.value[:12]}:{index}".encode()
        digest = hashlib.blake2b(
            half.to_bytes(4, "big"), digest_size=4, key=self._key, person=person
        ).digest()
        return int.from_bytes(digest, "big") & _HALF_MASK

    def _permute(self, value: int, kind: Kind, *, decrypt: bool) -> int:
        left, right = value >> _HALF_BITS, value & _HALF_MASK
        rounds = range(_ROUNDS - 1, -1, -1) if decrypt else range(_ROUNDS)
        for index in rounds:
            if decrypt:
                left, right = right ^ self._round(left, index, kind), left
            else:
                left, right = right, left ^ self._round(right, index, kind)
        return (left << _HALF_BITS) | right


MAX_PARTS_PER_RECORDING = 1 << _PART_BITS
MAX_RECORDINGS_PER_BOT = (1 << _REC_BITS) - 1
