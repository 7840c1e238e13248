-- rulehost serve: applies one batch of matches of one source (a Kafka partition) to the
-- windows of one hash slot, atomically (host/src/state/redis.rs builds the call).
--
-- KEYS[1] hwm     hash: source -> offset of the last line applied (idempotence)
-- KEYS[2] outbox  stream: alerts, alert updates and signals, appended in the same step
-- KEYS[3] ends    sorted set: window id -> end (ms), for the windows this source counts into
-- KEYS[2+2k], KEYS[3+2k] (k = 1..K): window k's hash and its unique values' set
--
-- ARGV: source, first offset, last offset, watermark ('' for none), window TTL grace (ms),
-- bookkeeping TTL (ms), key prefix (for another source's `ends`), K, S, then K windows, each
-- with its matches: id, RuleID, namespace, dedup, period ms, threshold, counts unique (0/1),
-- N, O, then N matches in input order (offset, time ms, and for a window that counts unique
-- values the value: '-' none, '+' value), then O openers (match number 1..N, alert id,
-- fields JSON: the matches that may open the window); then S signals (offset, record JSON).
-- Matches are numbered across the windows in order (window 1's first).
--
-- Returns {'need', i...} (0-based numbers of matches that open a window but came without
-- fields; nothing was changed), or {'ok', closed, alerted, next end, end_1..end_K, alerts...}:
-- windows closed, alerts created, the earliest end of this source's windows in the slot
-- (-1: none), each window's end now (0: none), and the window index (0-based) of each
-- alert created.

local function s(x) return string.format('%d', x) end

local source, first_offset = ARGV[1], tonumber(ARGV[2])
local last = tonumber(ARGV[3])
local watermark = ARGV[4] ~= '' and tonumber(ARGV[4]) or nil
local grace, keep = tonumber(ARGV[5]), tonumber(ARGV[6])
local prefix = ARGV[7]
local K, S = tonumber(ARGV[8]), tonumber(ARGV[9])
local hwm = tonumber(redis.call('HGET', KEYS[1], source) or '-1')
-- Every match is new unless the batch was (partly) applied before.
local fresh_batch = first_offset > hwm

local keys = {}
local a = 10
local numbered = 0
for k = 1, K do
  local key = {id = ARGV[a], rule = ARGV[a + 1], ns = ARGV[a + 2], dedup = ARGV[a + 3],
    period = tonumber(ARGV[a + 4]), thr = tonumber(ARGV[a + 5]), uniq = ARGV[a + 6] == '1',
    wkey = KEYS[2 + 2 * k], ukey = KEYS[3 + 2 * k], aid = {}, fields = {}}
  local n, o = tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8])
  a = a + 9
  key.at, key.n, key.width, key.base = a, n, key.uniq and 3 or 2, numbered
  numbered = numbered + n
  a = a + n * key.width
  for _ = 1, o do
    local j = tonumber(ARGV[a])
    key.aid[j], key.fields[j] = ARGV[a + 1], ARGV[a + 2]
    a = a + 3
  end
  keys[k] = key
end

local function load(key)
  local w = {exists = false, known = {}, added = {}}
  local h = redis.call('HGETALL', key.wkey)
  if #h > 0 then
    for j = 1, #h, 2 do w[h[j]] = h[j + 1] end
    w.exists = true
    w.start, w['end'], w.thr = tonumber(w.start), tonumber(w['end']), tonumber(w.thr)
    w.cnt, w.fev, w.lev = tonumber(w.cnt), tonumber(w.fev), tonumber(w.lev)
    w.alerted, w.created = w.alerted == '1', tonumber(w.created or '0')
    w.ucnt = key.uniq and redis.call('SCARD', key.ukey) or 0
  end
  return w
end

-- Pass 1: which matches open a window? All of them must carry fields, else change nothing.
local W, ends, times = {}, {}, {}
local need = {}
for k = 1, K do
  local key = keys[k]
  local w = load(key)
  W[k] = w
  local e = w.exists and w['end'] or nil
  local t_k = {}
  local p = key.at
  for j = 1, key.n do
    if fresh_batch or tonumber(ARGV[p]) > hwm then
      local t = tonumber(ARGV[p + 1])
      t_k[j] = t
      if e == nil or t >= e then
        if not key.aid[j] then need[#need + 1] = key.base + j - 1 end
        e = t + key.period
      end
    end
    p = p + key.width
  end
  ends[k], times[k] = e, t_k
end
if #need > 0 then
  return {'need', unpack(need)}
end

-- Pass 2: apply.
local function record(kind, key, w)
  redis.call('XADD', KEYS[2], '*', 'k', kind, 'a', w.aid, 'r', key.rule, 'n', key.ns,
    'd', key.dedup, 's', s(w.start), 'e', s(w['end']), 't', s(w.thr), 'c', s(w.cnt),
    'u', key.uniq and s(w.ucnt) or '', 'f', s(w.fev), 'l', s(w.lev), 'cr', s(w.created),
    'p', w.first, 'x', w.fields)
end

local closed, alerted, created = 0, 0, {}
local function close(key, w, wkey, ukey)
  if w.alerted then record('alert_update', key, w) end
  redis.call('DEL', wkey, ukey)
  redis.call('ZREM', prefix .. 'ends:' .. w.src, key.id)
  closed = closed + 1
end

for k = 1, K do
  local key = keys[k]
  local w = W[k]
  local t_k = times[k]
  local p = key.at
  for j = 1, key.n do
    local t = t_k[j]
    if t then
      if w.exists and t >= w['end'] then
        close(key, w, key.wkey, key.ukey)
        w = {exists = false, known = {}, added = {}}
        W[k] = w
      end
      if not w.exists then
        w.exists, w.fresh, w.start, w['end'], w.thr = true, true, t, t + key.period, key.thr
        w.cnt, w.ucnt, w.fev, w.lev, w.alerted, w.created = 0, 0, t, t, false, 0
        w.aid, w.fields, w.first, w.src = key.aid[j], key.fields[j], source .. ':' .. ARGV[p], source
      end
      w.cnt = w.cnt + 1
      if t < w.fev then w.fev = t end
      if t > w.lev then w.lev = t end
      if key.uniq then
        -- `known`: the values (with their '+') already counted in this call.
        local u = ARGV[p + 2]
        if string.byte(u, 1) == 43 and not w.known[u] then
          w.known[u] = true
          local v = string.sub(u, 2)
          if redis.call('SISMEMBER', key.ukey, v) == 0 then
            w.added[#w.added + 1] = v
            w.ucnt = w.ucnt + 1
          end
        end
      end
      w.dirty = true
      if w.src ~= source then
        redis.call('ZREM', prefix .. 'ends:' .. w.src, key.id)
        w.src, w.moved = source, true
      end
      local count = key.uniq and w.ucnt or w.cnt
      if not w.alerted and count >= w.thr then
        w.alerted, w.created, w.crossed = true, t, true
        record(key.ns == 'Error' and 'rule_error' or 'alert', key, w)
        alerted = alerted + 1
        created[#created + 1] = k - 1
      end
    end
    p = p + key.width
  end
end

-- Write back what changed (a window opened here whole, else only the fields that change:
-- the append-only file, fsynced, grows by what is written); windows expire on their own
-- `grace` after their period.
for k = 1, K do
  local key, w = keys[k], W[k]
  if w.dirty and w.fresh then
    redis.call('HSET', key.wkey, 'start', s(w.start), 'end', s(w['end']), 'thr', s(w.thr),
      'cnt', s(w.cnt), 'fev', s(w.fev), 'lev', s(w.lev), 'alerted', w.alerted and '1' or '0',
      'created', s(w.created), 'aid', w.aid, 'fields', w.fields, 'first', w.first,
      'src', w.src, 'rule', key.rule, 'ns', key.ns, 'dedup', key.dedup,
      'uniq', key.uniq and '1' or '0')
  elseif w.dirty then
    local changed = {'cnt', s(w.cnt), 'fev', s(w.fev), 'lev', s(w.lev)}
    if w.crossed then
      changed[7], changed[8], changed[9], changed[10] = 'alerted', '1', 'created', s(w.created)
    end
    if w.moved then
      changed[#changed + 1] = 'src'
      changed[#changed + 1] = w.src
    end
    redis.call('HSET', key.wkey, unpack(changed))
  end
  if w.dirty then
    redis.call('PEXPIRE', key.wkey, key.period + grace)
    if #w.added > 0 then
      redis.call('SADD', key.ukey, unpack(w.added))
    end
    if key.uniq and w.ucnt > 0 then
      redis.call('PEXPIRE', key.ukey, key.period + grace)
    end
    if w.fresh or w.moved then
      redis.call('ZADD', KEYS[3], w['end'], key.id)
    end
  end
end

for _ = 1, S do
  local off, rec = tonumber(ARGV[a]), ARGV[a + 1]
  a = a + 2
  if off > hwm then
    redis.call('XADD', KEYS[2], '*', 'k', 'signal', 'j', rec)
  end
end

-- Close this source's windows that its event time has passed.
if watermark then
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', watermark)
  for _, id in ipairs(due) do
    local wkey, ukey = prefix .. 'w:' .. id, prefix .. 'u:' .. id
    local h = redis.call('HGETALL', wkey)
    local w = {}
    for j = 1, #h, 2 do w[h[j]] = h[j + 1] end
    if #h > 0 and tonumber(w['end']) <= watermark then
      w.start, w['end'], w.thr = tonumber(w.start), tonumber(w['end']), tonumber(w.thr)
      w.cnt, w.fev, w.lev = tonumber(w.cnt), tonumber(w.fev), tonumber(w.lev)
      w.alerted, w.created = w.alerted == '1', tonumber(w.created)
      w.ucnt = redis.call('SCARD', ukey)
      local key = {id = id, rule = w.rule, ns = w.ns, dedup = w.dedup, uniq = w.uniq == '1'}
      close(key, w, wkey, ukey)
    elseif #h == 0 then
      redis.call('ZREM', KEYS[3], id)
    end
  end
end

if last > hwm then
  redis.call('HSET', KEYS[1], source, s(last))
end
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[3], keep)

local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local out = {'ok', closed, alerted, #first > 0 and tonumber(first[2]) or -1}
for k = 1, K do
  local w = W[k]
  if w.exists and w.dirty and redis.call('EXISTS', keys[k].wkey) == 1 then
    out[#out + 1] = w['end']
  else
    out[#out + 1] = ends[k] or 0
  end
end
for _, k in ipairs(created) do out[#out + 1] = k end
return out
