"""HPACK where `hpack`'s general code costs more than the common case needs.

**Requests** (`RequestDecoder`): a client that repeats its fields (every browser and load
tester does) sends, after its first request, blocks made only of one-byte indexed fields. Such
a block changes no table, so it is read with one table lookup per byte; any other block goes
through `hpack`'s decoder unchanged. Both enforce the same header-list limit.

**Responses** (`ResponseEncoder`): without the dynamic table, as nginx encodes its HTTP/2
responses.

`hpack`'s `Encoder` indexes every field it sends and looks each one up in the dynamic table by
a linear scan: ~14 µs for a typical response head. Without the dynamic table a field encodes
the same way on every connection (a static-table index, or a literal that names a static-table
name), so its bytes are kept in one process-wide cache: a head whose fields were sent before
costs a dictionary lookup per field. Only short fields are kept (`CACHED_FIELD_BYTES`), and no
never-indexed one (a cookie or a credential would outlive its connection in memory). What the
client loses is the few bytes the dynamic table would have saved on repeated fields (each one
is still Huffman-coded once, then cached). A field too long to cache is not Huffman-coded at all:
`hpack` codes in Python, byte by byte, and such a field would be coded for every response.
Fields marked never-indexed (`NeverIndexedHeaderTuple`: cookies, authorization) keep that mark.
Changes to the table size the client asks for are still announced (the `Encoder` does that).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

from h2.exceptions import ProtocolError as H2ProtocolError
from h2.frame_buffer import FrameBuffer
from hpack import Decoder, Encoder, HeaderTuple, HPACKDecodingError, OversizedHeaderListError
from hyperframe.frame import Frame

CACHED_FIELDS = 4096
"""How many encoded fields the cache keeps; when full it starts over (fields with values that
never repeat, like dates and ids, would otherwise fill it)."""
CACHED_FIELD_BYTES = 256
"""The longest field (name and value) the cache keeps: a backend's large fields that change
every time (tokens, echoes of the request) would hold CACHED_FIELDS times 64 kB otherwise.
Never-indexed fields (cookies, credentials) are never cached either: they would outlive their
connection in memory."""
_WITHOUT_INDEXING = b"\x00"
_NEVER_INDEXED = b"\x10"

_encoded: dict[tuple[bytes, bytes, bool], bytes] = {}

_ONE_BYTE_INDEXED = bytes(range(0x81, 0xFF))
"""The bytes that are each a whole indexed field (index 1 to 126; 0xFF starts a longer one)."""
_SIZE_UPDATES = 2
"""Dynamic table size updates a header block may open with (RFC 7541 §4.2)."""
_ENTRY_OVERHEAD = 32
"""RFC 7541 §4.1: what each field adds to a header list's size besides its name and value."""


def header_list_size(fields: Sequence[tuple[bytes, bytes]]) -> int:
    """A header list's size (RFC 7541 §4.1): its names and values, and 32 more per field.
    (Summed in C: a generator over the pairs cost ~80 bytecodes per request.)"""
    return sum(map(len, chain.from_iterable(fields))) + _ENTRY_OVERHEAD * len(fields)


class RequestDecoder(Decoder):
    """A `Decoder` with a fast path for blocks of one-byte indexed fields (see the module
    docstring)."""

    @classmethod
    def like(cls, decoder: Decoder) -> RequestDecoder:
        """One with `decoder`'s limits (what `h2` set on the decoder it made)."""
        made = cls(decoder.max_header_list_size)
        made.max_allowed_table_size = decoder.max_allowed_table_size
        made.header_table_size = decoder.header_table_size
        return made

    def decode(self, data: bytes, raw: bool = False) -> list[HeaderTuple]:
        if not (raw and data and isinstance(data, bytes)) or data.translate(
            None, _ONE_BYTE_INDEXED
        ):
            self._bounded(data)
            return list(super().decode(data, raw))
        limit = self.max_header_list_size
        # each field adds 32 at least: a block of more fields than that is refused unread (a
        # 1 MiB block made a million fields first, a 1.3 s stall of the event loop)
        if _ENTRY_OVERHEAD * len(data) > limit:
            raise OversizedHeaderListError(f"A header list larger than {limit} has been received")
        entry = self.header_table.get_by_index
        headers = [HeaderTuple(*entry(byte & 0x7F)) for byte in data]
        if header_list_size(headers) > limit:
            raise OversizedHeaderListError(f"A header list larger than {limit} has been received")
        return headers

    def _bounded(self, data: bytes) -> None:
        """Refuse, before `hpack` walks it in Python, a block larger than the header-list limit
        (its fields could only be larger still) and one that opens with more than the two
        table-size updates RFC 7541 §4.2 allows: a one-byte update (0x20) adds nothing to the
        list's size, and a 1 MB block of them held the event loop for seconds."""
        limit = self.max_header_list_size
        if len(data) > limit:
            raise OversizedHeaderListError(f"A header block larger than {limit} has been received")
        updates, at = 0, 0
        while at < len(data) and data[at] & 0xE0 == 0x20:  # 001xxxxx: a table-size update
            updates += 1
            if updates > _SIZE_UPDATES:
                raise HPACKDecodingError("more than two dynamic table size updates in a block")
            at += 1
            if data[at - 1] & 0x1F == 0x1F:  # a longer integer: its bytes while the top bit is set
                while at < len(data) and data[at] & 0x80:
                    at += 1
                at += 1


class ResponseEncoder(Encoder):
    """An `Encoder` that never adds to its dynamic table (see the module docstring)."""

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        block = []
        if self.header_table.resized:
            block.append(self._encode_table_size_change())
            self.header_table.resized = False
        cache = _encoded
        for header in headers:
            sensitive = isinstance(header, HeaderTuple) and not header.indexable
            key = (header[0], header[1], sensitive)
            field = cache.get(key)
            if field is None:
                field = self._field(header[0], header[1], sensitive)
                if not sensitive and len(header[0]) + len(header[1]) <= CACHED_FIELD_BYTES:
                    if len(cache) >= CACHED_FIELDS:
                        cache.clear()
                    cache[key] = field
            block.append(field)
        return b"".join(block)

    def _field(self, name: bytes, value: bytes, sensitive: bool) -> bytes:
        indexbit = _NEVER_INDEXED if sensitive else _WITHOUT_INDEXING
        # Huffman coding runs in Python, byte by byte: only for the fields that are cached
        # (coded once); a long one goes as it is (a backend's 64 KiB of headers, coded each
        # time, cost ~70 ms of the event loop per response)
        huffman = len(name) + len(value) <= CACHED_FIELD_BYTES
        match = self.header_table.search(name, value)  # the static table: nothing is added
        if match is None:
            return self._encode_literal(name, value, indexbit, huffman=huffman)
        index, _, perfect = match
        if perfect is not None and not sensitive:
            return self._encode_indexed(index)
        return self._encode_indexed_literal(index, value, indexbit, huffman=huffman)


class BoundedFrameBuffer(FrameBuffer):
    """`h2`'s frame buffer, with the frames of a header block in progress bounded by their bytes
    (`limit`, the header-list limit) and not only by their count: 64 CONTINUATION frames of
    16 KiB each held 1 MiB per connection until END_HEADERS (or the idle timeout), 2 MiB with
    larger frames, and a client's share of connections held hundreds of MiB."""

    def __init__(self, limit: int) -> None:
        super().__init__(server=True)
        self._limit = limit

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        f = super()._update_header_buffer(f)
        if not self._headers_buffer:  # (no block in progress: every DATA frame, say)
            return f
        held = sum(len(frame.data) for frame in self._headers_buffer)
        if held > self._limit:
            msg = f"a header block larger than {self._limit} bytes is in progress"
            raise H2ProtocolError(msg)
        return f
