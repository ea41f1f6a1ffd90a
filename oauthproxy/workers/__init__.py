"""One data-plane process per core (`WORKERS` above 1).

    parent (`oauthproxy run`): `serve` with the worker pool in place of the data plane
    ├─ embedded Redis, admin API, certificate manager (ACME orders, renewal), Docker events
    │  follower, its own request logger, the data-loss check (`/health` reports it)
    ├─ the public ports, claimed (bound, never listening: `listeners.py`)
    └─ pool nursery: one supervising task per worker (`pool.py`)
       └─ worker i (`python -m oauthproxy.workers.worker`, `worker.py`)
          ├─ its own listeners on the same ports (SO_REUSEPORT: the kernel spreads connections)
          ├─ supervisor: its own consumer group `workflow-group:{GATEWAY_ID}-{i}`, its instances,
          │  route tables and certificates in memory, as any replica of the gateway
          └─ request logger, and a report pipe to the parent: ready, then its metrics

What runs once is what must not be done twice or serves the operator: ACME orders and renewal
(the issuance lock would make a second one wait anyway), the Docker follower, the admin API. What
runs per worker is what a request touches. A worker that dies is started again (with backoff),
and dies itself when the parent does (the parent-death signal, `storage/child.py`).
"""
