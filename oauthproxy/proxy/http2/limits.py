"""What one HTTP/2 client connection may use: sent to the client in SETTINGS, enforced by the
`h2` library (and, for time, by the connection)."""

from __future__ import annotations

from dataclasses import dataclass

from h2.settings import SettingCodes

from oauthproxy.proxy.codec import MAX_HEAD_SIZE


@dataclass(frozen=True)
class Http2Limits:
    """What one client connection may use; sent to the client in SETTINGS."""

    idle_timeout: float = 75.0
    """Seconds without an open stream before the connection is closed (PROXY_IDLE_TIMEOUT)."""
    send_timeout: float = 60.0
    """Seconds a response may wait for the client to open its flow-control window
    (PROXY_SEND_TIMEOUT); then the stream is reset and its upstream connection closed."""
    max_concurrent_streams: int = 100
    max_header_list_size: int = MAX_HEAD_SIZE
    """Bytes of one header block, decoded (as HTTP/1.1's head limit)."""
    header_table_size: int = 4096
    """The HPACK dynamic table the client may make us keep."""
    max_frame_size: int = 16_384
    stream_window: int = 256 * 1024
    """Request body bytes one stream may send ahead of forwarding."""
    connection_window: int = 1024 * 1024
    """Request body bytes all streams together may send ahead of forwarding."""

    def settings(self) -> dict[SettingCodes, int]:
        return {
            SettingCodes.MAX_CONCURRENT_STREAMS: self.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: self.max_header_list_size,
            SettingCodes.HEADER_TABLE_SIZE: self.header_table_size,
            SettingCodes.MAX_FRAME_SIZE: self.max_frame_size,
            SettingCodes.INITIAL_WINDOW_SIZE: self.stream_window,
            SettingCodes.ENABLE_PUSH: 0,
        }
