"""The certificate manager: ACME (HTTP-01) issuance in worker threads, self-signed certificates,
renewal, and the issuance lock that keeps replicas from ordering the same certificate twice."""
