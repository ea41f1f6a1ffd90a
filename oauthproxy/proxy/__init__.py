"""The proxy data plane: h11 on Trio streams, one instance (nursery) per hostname."""
