"""The request log's write script: one call per batch (see `oauthproxy.storage.request_logs`,
which sends it, and `oauthproxy.logs.schema`, which plans what it writes)."""

# ARGV[1]: the batch's header as JSON (`schema.encoded`): {"n": entries, "runs": [[bucket, first
# position, last position]], "buckets": {bucket: its first second}, "groups": [[[index keys], [[the
# newest entry's score, [positions]], ...: an index member each, "{count} {key} {key}..."]]],
# "counters": {key: n},
# "visitors": {key: [client IPs]}, "durations": {key: [durations]}} (positions count from 1);
# ARGV[2] retention seconds; ARGV[3] the stream's MAXLEN; ARGV[4] the entries an index keeps,
# ARGV[5] how many more it may list before it is trimmed (its oldest members go, as long as it keeps
# that many; its member ARGV[12], `schema.COUNT`, holds as its score how many entries it lists; an
# index written before chunks, without it, lists one per member: a key alone); ARGV[13] the most
# keys a member holds (members are read, to be trimmed, a few at a time: they are long; only
# their leading count is looked at); ARGV[6] durations kept
# per hostname; ARGV[7] entry keys per stream item; ARGV[8] "1": the writes go to the AOF and to
# replicas (REQUEST_LOG_DURABLE), else they stay in memory (and RDB snapshots): a best-effort log
# need not double Redis's work per request; ARGV[9] the seconds a bucket spans; ARGV[10] the time
# now (seconds); ARGV[11] each entry's key and packed value, alternating, joined by "\x1e"
# (`schema.ENTRIES`): one HSET per run of entries in one bucket stores them. A bucket expires the
# retention after its first second, so no entry outlives the retention (and not before a bucket's
# span from now: an entry that began longer ago than the retention, a long WebSocket, is still seen
# live). The stream carries entry keys only, a batch's in one item (up to STREAM_CHUNK, space-
# separated: keys hold no spaces); its readers fetch the entries. The stream keeps about
# LOG_STREAM_MAXLEN entries: as many items as this batch's make that many. Long argument lists go in
# slices (Lua's unpack has a limit).
WRITE_BATCH = """
if ARGV[8] ~= '1' then
  if redis.replicate_commands then redis.replicate_commands() end
  redis.set_repl(redis.REPL_NONE)
end
local batch = cjson.decode(ARGV[1])
local retention = tonumber(ARGV[2])
local maxlen = ARGV[3]
local limit, slack = tonumber(ARGV[4]), tonumber(ARGV[5])
local span, now = tonumber(ARGV[9]), tonumber(ARGV[10])
local n = batch.n
local counter = ARGV[12]
local function sliced(command, key, list, width)
  for start = 1, #list, width do
    redis.call(command, key, unpack(list, start, math.min(start + width - 1, #list)))
  end
end
local parts, joined, from = {}, ARGV[11], 1
for part = 1, 2 * n do
  local stop = string.find(joined, '\\30', from, true) or (#joined + 1)
  parts[part] = string.sub(joined, from, stop - 1)
  from = stop + 1
end
for _, run in ipairs(batch.runs) do
  for start = run[2], run[3], 500 do
    local last = math.min(start + 499, run[3])
    redis.call('HSET', run[1], unpack(parts, 2 * start - 1, 2 * last))
  end
end
for bucket, second in pairs(batch.buckets) do
  redis.call('EXPIREAT', bucket, math.max(second + retention, now + span))
end
local keys = {}
for position = 1, n do
  keys[position] = parts[2 * position - 1]
end
local chunk = tonumber(ARGV[7])
for start = 1, n, chunk do
  local last = math.min(start + chunk - 1, n)
  local items = math.max(1, math.floor(maxlen / (last - start + 1)))
  redis.call('XADD', 'stream:requests', 'MAXLEN', '~', items, '*',
    'keys', table.concat(keys, ' ', start, last))
end
if n > 0 then
  redis.call('EXPIRE', 'stream:requests', retention)
end
local touched, order = {}, {}
for _, group in ipairs(batch.groups) do
  local indexes, chunks = group[1], group[2]
  for _, index in ipairs(indexes) do
    if touched[index] == nil then
      local held = redis.call('ZSCORE', index, counter)
      touched[index] = held and tonumber(held) or redis.call('ZCARD', index)
      order[#order + 1] = index
    end
  end
  for _, chunk in ipairs(chunks) do
    local positions = chunk[2]
    local first, count = positions[1], #positions
    local member
    if positions[count] - first + 1 == count then
      member = count .. ' ' .. table.concat(keys, ' ', first, first + count - 1)
    else
      local listed = {}
      for k, position in ipairs(positions) do
        listed[k] = keys[position]
      end
      member = count .. ' ' .. table.concat(listed, ' ')
    end
    for _, index in ipairs(indexes) do
      redis.call('ZADD', index, chunk[1], member)
      touched[index] = touched[index] + count
    end
  end
end
local function trimmed(index, held)
  local skipped, width = 0, math.ceil((held - limit) / tonumber(ARGV[13]))
  while held > limit do
    local oldest = redis.call('ZRANGE', index, skipped, skipped + width - 1)
    width = math.min(2 * width, 64)
    local dropped, full = {}, false
    for _, member in ipairs(oldest) do
      if member == counter then
        skipped = skipped + 1
      else
        local size = tonumber(string.match(member, '^(%d+) ')) or 1
        if held - size < limit then
          full = true
          break
        end
        held = held - size
        dropped[#dropped + 1] = member
      end
    end
    if #dropped > 0 then
      redis.call('ZREM', index, unpack(dropped))
    end
    if full or #oldest == 0 then
      break
    end
  end
  return held
end
for _, index in ipairs(order) do
  local held = touched[index]
  if held > limit + slack then
    held = trimmed(index, held)
  end
  redis.call('ZADD', index, held, counter)
  redis.call('EXPIRE', index, retention)
end
for key, count in pairs(batch.counters) do
  redis.call('INCRBY', key, count)
  redis.call('EXPIRE', key, retention)
end
for key, addresses in pairs(batch.visitors) do
  sliced('PFADD', key, addresses, 1000)
  redis.call('EXPIRE', key, retention)
end
for key, values in pairs(batch.durations) do
  sliced('LPUSH', key, values, 1000)
  redis.call('LTRIM', key, 0, tonumber(ARGV[6]) - 1)
  redis.call('EXPIRE', key, retention)
end
return n
"""
