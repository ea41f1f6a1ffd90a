"""HTTP/2 from clients over TLS (ALPN `h2`), on the sans-IO `h2` library: each stream is routed,
checked and logged like an HTTP/1.1 request, and forwarded to the instance's HTTP/1.1 pool."""
