"""`RequestDecoder`: its fast path reads what `hpack`'s decoder reads, with the same limit.
`ResponseEncoder`: HPACK without the dynamic table. Every block decodes (with hpack's own
decoder, as a client would) to the fields given, in order; nothing enters the client's dynamic
table; never-indexed fields stay so; a smaller table the client asks for is announced."""

from __future__ import annotations

import pytest
from hpack import (
    Decoder,
    Encoder,
    HeaderTuple,
    HPACKDecodingError,
    NeverIndexedHeaderTuple,
    OversizedHeaderListError,
)

from oauthproxy.proxy.http2 import encoding
from oauthproxy.proxy.http2.encoding import RequestDecoder, ResponseEncoder

HEAD = [
    (b":status", b"200"),  # fully in the static table
    (b"content-type", b"text/plain"),  # its name in the static table
    (b"x-served-by", b"backend-1"),  # neither
    NeverIndexedHeaderTuple(b"set-cookie", b"session=secret"),
    HeaderTuple(b":status", b"200"),
]


def test_blocks_decode_to_the_fields_and_leave_the_dynamic_table_empty() -> None:
    encoder, decoder = ResponseEncoder(), Decoder()
    for _ in range(3):  # the second and third come from the cache
        block = encoder.encode(HEAD)
        decoded = decoder.decode(block, raw=True)
        assert [(name, value) for name, value in decoded] == [(n, v) for n, v, *_ in HEAD]
        assert [isinstance(field, NeverIndexedHeaderTuple) for field in decoded] == [
            False,
            False,
            False,
            True,
            False,
        ]
        assert not decoder.header_table.dynamic_entries
        assert not encoder.header_table.dynamic_entries


def test_only_short_indexable_fields_are_cached() -> None:
    """The cache is process-wide: a credential kept in it would outlive its connection, and
    large fields would hold CACHED_FIELDS times 64 kB."""
    encoder, decoder = ResponseEncoder(), Decoder()
    large = (b"x-token", b"t" * (encoding.CACHED_FIELD_BYTES + 1))
    block = encoder.encode([*HEAD, large])
    assert decoder.decode(block, raw=True) == [tuple(field) for field in [*HEAD, large]]
    cached = {(name, value) for name, value, _ in encoding._encoded}
    assert (b"x-served-by", b"backend-1") in cached
    assert (b"set-cookie", b"session=secret") not in cached
    assert large not in cached


def test_a_field_too_long_to_cache_goes_without_huffman_coding() -> None:
    """hpack Huffman-codes in Python, byte by byte, and a field too long to cache was coded for
    every response: 800 KB of configured headers cost 0.8 s of the event loop per response. A
    long field goes as it is (its bytes appear in the block); a short one is still coded."""
    encoder, decoder = ResponseEncoder(), Decoder()
    long_value = b"v" * (encoding.CACHED_FIELD_BYTES + 1)
    block = encoder.encode([(b"x-long", long_value), (b"x-short", b"vvvvvvvvvvvvvvvv")])
    assert long_value in block
    assert b"vvvvvvvvvvvvvvvv" not in block.replace(long_value, b"")
    assert decoder.decode(block, raw=True) == [(b"x-long", long_value), (b"x-short", b"v" * 16)]


def test_a_smaller_table_is_announced_once() -> None:
    encoder, decoder = ResponseEncoder(), Decoder()
    encoder.header_table_size = 0
    decoder.max_allowed_table_size = 0
    first = encoder.encode(HEAD)
    assert first[0] & 0xE0 == 0x20  # a dynamic table size update opens the block
    assert decoder.header_table.maxsize == 4096
    decoder.decode(first, raw=True)
    assert decoder.header_table.maxsize == 0
    second = encoder.encode(HEAD)
    assert second[0] & 0xE0 != 0x20
    assert second == first[1:]


REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/"),
    (b"user-agent", b"h2load nghttp2/1.52.0"),
    NeverIndexedHeaderTuple(b"authorization", b"Bearer x"),
]


def test_the_fast_path_reads_what_hpack_reads() -> None:
    encoder, ours, theirs = Encoder(), RequestDecoder(), Decoder()
    blocks = [encoder.encode(REQUEST[:5]) for _ in range(3)]  # literals, then one byte each
    blocks += [encoder.encode(REQUEST), encoder.encode([(b":path", b"/other")])]
    blocks.append(b"\x82\x86")  # static entries only
    fast = [all(byte & 0x80 and byte != 0xFF for byte in block) for block in blocks]
    assert fast == [False, True, True, False, False, True]
    for block in blocks:
        mine = ours.decode(block, raw=True)
        assert mine == theirs.decode(block, raw=True)
        assert all(type(field) is HeaderTuple for field in mine[:5])
    assert ours.header_table.dynamic_entries == theirs.header_table.dynamic_entries


def test_the_fast_path_keeps_the_limits() -> None:
    size = sum(len(name) + len(value) + 32 for name, value in REQUEST[:5])  # RFC 7541 §4.1
    encoder, decoder = Encoder(), RequestDecoder(max_header_list_size=size)
    decoder.decode(encoder.encode(REQUEST[:5]), raw=True)
    indexed = encoder.encode(REQUEST[:5])
    assert len(indexed) == 5  # one byte per field: the fast path
    assert len(decoder.decode(indexed, raw=True)) == 5
    decoder.max_header_list_size = size - 1
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(indexed, raw=True)
    with pytest.raises(HPACKDecodingError):
        decoder.decode(bytes([0x80 | 126]), raw=True)  # no such entry


def test_a_block_too_large_for_the_limit_is_refused_before_its_fields_are_read() -> None:
    """Each one-byte field adds at least 32 to the list's size (RFC 7541 §4.1): a block of
    1 MiB of them (what 64 CONTINUATION frames carry) is refused having read no more fields
    than the limit allows. Reading all of them first stalled the event loop ~1.3 s a block."""
    decoder = RequestDecoder(max_header_list_size=65536)
    lookups = 0
    table_lookup = decoder.header_table.get_by_index

    def counted(index: int) -> tuple[bytes, bytes]:
        nonlocal lookups
        lookups += 1
        return table_lookup(index)

    decoder.header_table.get_by_index = counted  # type: ignore[method-assign]  # hpack's table
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(b"\x82" * 2**20, raw=True)
    assert lookups <= 65536 // 32


def test_a_decoder_made_like_h2s_keeps_its_limits() -> None:
    made = Decoder(max_header_list_size=1234)
    made.max_allowed_table_size = 100
    like = RequestDecoder.like(made)
    assert (like.max_header_list_size, like.max_allowed_table_size) == (1234, 100)


def test_a_block_opens_with_at_most_two_table_size_updates() -> None:
    """RFC 7541 §4.2: two at most; a block of them cost `hpack` a Python loop each."""
    fields = [(b":method", b"GET"), (b":path", b"/")]
    valid = Encoder().encode(fields)
    decoder = RequestDecoder(65536)
    decoded = decoder.decode(b"\x20\x3f\xe1\x1f" + valid, raw=True)
    assert [tuple(field) for field in decoded] == fields
    with pytest.raises(HPACKDecodingError, match="table size updates"):
        RequestDecoder(65536).decode(b"\x20\x20\x20" + valid, raw=True)
    with pytest.raises(OversizedHeaderListError):
        RequestDecoder(1024).decode(b"\x20" + b"\x00\x01a\x01b" * 300, raw=True)
