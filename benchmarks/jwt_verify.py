"""CPU cost of one access-token verification, the check the data plane makes on every request.

    .venv/bin/python benchmarks/jwt_verify.py            # 10,000 tokens, 5 rounds
    .venv/bin/python benchmarks/jwt_verify.py --tokens 2000 --rounds 3

Signs N distinct RS256 tokens (2048-bit key) with the project's own `oauthproxy.oauth.jws.sign`,
then measures, as CPU time of this process (`time.process_time`, so another process on the
machine does not count), per verification:

- **first sight**: N distinct tokens, each verified once by a fresh `TokenVerifier` (no cache
  hit: the signature is checked, the JSON parsed, every claim checked);
- **repeat**: N verifications cycling over the first 1,000 of those tokens, by a verifier that
  has seen them (what a client sending its token on every request costs once it has been seen).

Each figure is the median of the rounds. Nothing is asserted: the numbers are for reading.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from oauthproxy.oauth.jws import sign
from oauthproxy.oauth.signing import key_id
from oauthproxy.oauth.verify import TokenVerifier

ISSUER = "https://auth.bench.local"


REPEATED = 1_000


def tokens(count: int, key: rsa.RSAPrivateKey, now: float) -> list[str]:
    kid = key_id(key.public_key())
    made = []
    for _ in range(count):
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "github-42",
            "aud": ["https://bench.local"],
            "azp": "client-1",
            "scope": "mcp:read mcp:write",
            "jti": uuid.uuid4().hex,
            "iat": int(now),
            "exp": int(now) + 600,
            "username": "alice",
            "email": "alice@example.com",
            "groups": ["staff"],
        }
        made.append(sign(claims, key, kid))
    return made


def cpu_per_call(run: Callable[[], None], calls: int) -> float:
    started = time.process_time()
    run()
    return (time.process_time() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = time.time()
    made = tokens(options.tokens, key, now)
    cycled = [made[index % REPEATED] for index in range(len(made))]
    first: list[float] = []
    repeat: list[float] = []
    for _ in range(options.rounds):
        verifier = TokenVerifier(ISSUER, {key_id(key.public_key()): key.public_key()})

        def verify_all(batch: list[str], check: TokenVerifier = verifier) -> None:
            for token in batch:
                check.verify(token, now=now)

        first.append(cpu_per_call(lambda: verify_all(made), len(made)))
        verify_all(made[:REPEATED])
        repeat.append(cpu_per_call(lambda: verify_all(cycled), len(cycled)))
    print(f"tokens: {len(made)}, rounds: {options.rounds} (CPU µs per verification, median)")
    print(f"first sight: {statistics.median(first):8.1f}")
    print(f"repeat:      {statistics.median(repeat):8.1f}")


if __name__ == "__main__":
    main()
