"""Host ports held by services: `port:{port}` (the allocation) and `service:ports:{service}` (a
hash of the service's allocations by port name), always written together.

Every change is one Lua script, so it is atomic across replicas: two concurrent allocations never
get the same port, and a port is never in one key without the other. The choice of port (the
ranges, the restricted ports) is `services.ports`'; the script only takes the first free one
from the list of candidate ranges it is given.
"""

from __future__ import annotations

from oauthproxy.errors import Conflict, NotFound
from oauthproxy.models.services import PortAllocation
from oauthproxy.storage import keys
from oauthproxy.storage.base import Redis, dump, scan_keys, translate_errors

_ALLOCATE = """
-- KEYS[1] service:ports:{service}; ARGV: port name, allocation JSON, requested port (0: any),
-- then the restricted ports' count and ports, then pairs of range bounds to choose from.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'name', 0} end
local restricted = {}
local count = tonumber(ARGV[4])
for i = 5, 4 + count do restricted[ARGV[i]] = true end
local function claim(port)
  local record = cjson.decode(ARGV[2])
  record['host_port'] = port
  local encoded = cjson.encode(record)
  redis.call('SET', 'port:' .. port, encoded)
  redis.call('HSET', KEYS[1], ARGV[1], encoded)
  return {'ok', port}
end
local wanted = tonumber(ARGV[3])
if wanted > 0 then
  if redis.call('EXISTS', 'port:' .. wanted) == 1 then return {'taken', wanted} end
  return claim(wanted)
end
for i = 5 + count, #ARGV, 2 do
  for port = tonumber(ARGV[i]), tonumber(ARGV[i + 1]) do
    if not restricted[tostring(port)] and redis.call('EXISTS', 'port:' .. port) == 0 then
      return claim(port)
    end
  end
end
return {'full', 0}
"""

_RELEASE = """
-- KEYS[1] service:ports:{service}; ARGV[1] port name. Returns the allocation released, or false.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local port = cjson.decode(raw)['host_port']
redis.call('DEL', 'port:' .. port)
redis.call('HDEL', KEYS[1], ARGV[1])
return raw
"""

_REPLACE = """
-- KEYS[1] service:ports:{service}; ARGV[1] port name, ARGV[2] the new allocation (same port).
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local port = cjson.decode(raw)['host_port']
redis.call('SET', 'port:' .. port, ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return raw
"""


@translate_errors
class PortRepository:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._allocate = redis.register_script(_ALLOCATE)
        self._release = redis.register_script(_RELEASE)
        self._replace = redis.register_script(_REPLACE)

    async def allocate(
        self,
        allocation: PortAllocation,
        *,
        requested: int | None,
        restricted: frozenset[int],
        ranges: list[range],
    ) -> PortAllocation:
        """Store `allocation` on `requested`, or on the first free port of `ranges` that is not
        `restricted`; `Conflict` when the port or the port name is taken or no port is free."""
        bounds = [str(bound) for r in ranges for bound in (r.start, r.stop - 1)]
        answer: list[str | int] = await self._allocate(
            keys=[keys.service_ports(allocation.service_name)],
            args=[
                allocation.port_name,
                dump(allocation),
                str(requested or 0),
                str(len(restricted)),
                *map(str, sorted(restricted)),
                *bounds,
            ],
        )
        outcome, port = str(answer[0]), int(answer[1])
        if outcome == "name":
            message = f"service {allocation.service_name!r} already has a port named "
            raise Conflict("port_name", message + repr(allocation.port_name))
        if outcome == "taken":
            raise Conflict("host_port", f"port {port} is already allocated")
        if outcome == "full":
            raise Conflict("host_port", "no free port is left in the exposed range")
        return allocation.model_copy(update={"host_port": int(port)})

    async def release(self, service: str, port_name: str) -> PortAllocation:
        raw: str | None = await self._release(keys=[keys.service_ports(service)], args=[port_name])
        if not raw:
            raise NotFound("port", f"{service}/{port_name}")
        return PortAllocation.model_validate_json(raw)

    async def replace(self, allocation: PortAllocation) -> None:
        """Store `allocation` over the service's port of the same name (same host port)."""
        found: str | None = await self._replace(
            keys=[keys.service_ports(allocation.service_name)],
            args=[allocation.port_name, dump(allocation)],
        )
        if not found:
            raise NotFound("port", f"{allocation.service_name}/{allocation.port_name}")

    async def of_service(self, service: str) -> list[PortAllocation]:
        found = await self._redis.hvals(keys.service_ports(service))
        ports = [PortAllocation.model_validate_json(raw) for raw in found]
        return sorted(ports, key=lambda p: p.host_port)

    async def get(self, service: str, port_name: str) -> PortAllocation:
        raw = await self._redis.hget(keys.service_ports(service), port_name)
        if raw is None:
            raise NotFound("port", f"{service}/{port_name}")
        return PortAllocation.model_validate_json(raw)

    async def holder(self, port: int) -> PortAllocation | None:
        raw = await self._redis.get(keys.port(port))
        return None if raw is None else PortAllocation.model_validate_json(raw)

    async def all(self) -> list[PortAllocation]:
        found = await scan_keys(self._redis, keys.port("*"))
        values = await self._redis.mget(found) if found else []
        ports = [PortAllocation.model_validate_json(raw) for raw in values if raw]
        return sorted(ports, key=lambda p: p.host_port)
