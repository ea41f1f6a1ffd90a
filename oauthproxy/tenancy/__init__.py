"""The tenant model: what a token may create, read, change and delete, decided in one place.

The admin token may do anything; an owner token only what touches hostnames it owns. Every
module here is pure: frozen inputs in, a decision out (or a `Refused` raised), no I/O. The admin
API gathers the facts (who calls, what is stored) and asks here; no handler carries its own
ownership rule. docs/security.md says the same in prose.

- `caller`: who is asking (`Caller`) and the refusal every rule raises (`Refused`).
- `records`: who may list, read, change and delete proxies, routes and services (another owner's
  record reads as missing), what a route may name, which hostnames only the admin may proxy.
- `targets`: which addresses and ports an owner token may point a proxy, route or service at.
- `headers`: which headers no token may configure on a proxy.
- `quotas`: how many records an owner token may hold.
- `certificates`: who may create, see and link which certificates; the certificate quota.
"""
