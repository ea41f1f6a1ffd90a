"""The proxy data plane: HTTP/1.1 (llhttp parsing) on Trio streams, one instance (nursery)
per hostname."""
