-- rulehost serve: applies one batch of matches of one source (a Kafka partition) to the
-- windows of one hash slot, atomically (host/src/state/redis.rs builds the call).
--
-- KEYS[1] hwm     hash: source -> offset of the last line applied (idempotence)
-- KEYS[2] outbox  stream: alerts, alert updates and signals, appended in the same step
-- KEYS[3] ends    sorted set: window id -> end (ms), for the windows this source counts into
-- KEYS[2+2k], KEYS[3+2k] (k = 1..K): window k's hash and its unique values' set
--
-- ARGV: source, last offset, watermark ('' for none), window TTL grace (ms), bookkeeping TTL
-- (ms), key prefix (for another source's `ends`), K, M, S, then K windows (id, RuleID,
-- namespace, dedup, period ms, threshold, counts unique 0/1), M matches (window index,
-- offset, time ms, unique ('-' none, else '+' value), alert id ('' none), fields JSON ('' none)),
-- S signals (offset, record JSON).
--
-- Returns {'need', i...} (0-based matches that open a window but came without fields;
-- nothing was changed), or {'ok', closed, alerted, next end, end_1..end_K, alerts...}:
-- windows closed, alerts created, the earliest end of this source's windows in the slot
-- (-1: none), each window's end now (0: none), and the window index (0-based) of each
-- alert created.

local function s(x) return string.format('%d', x) end

local source, last = ARGV[1], tonumber(ARGV[2])
local watermark = ARGV[3] ~= '' and tonumber(ARGV[3]) or nil
local grace, keep = tonumber(ARGV[4]), tonumber(ARGV[5])
local prefix = ARGV[6]
local K, M, S = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local hwm = tonumber(redis.call('HGET', KEYS[1], source) or '-1')

local keys = {}
local a = 10
for k = 1, K do
  keys[k] = {id = ARGV[a], rule = ARGV[a + 1], ns = ARGV[a + 2], dedup = ARGV[a + 3],
    period = tonumber(ARGV[a + 4]), thr = tonumber(ARGV[a + 5]), uniq = ARGV[a + 6] == '1',
    wkey = KEYS[2 + 2 * k], ukey = KEYS[3 + 2 * k]}
  a = a + 7
end
local matches = {}
for i = 1, M do
  matches[i] = {k = tonumber(ARGV[a]), off = tonumber(ARGV[a + 1]), t = tonumber(ARGV[a + 2]),
    u = ARGV[a + 3], aid = ARGV[a + 4], fields = ARGV[a + 5]}
  a = a + 6
end

-- Pass 1: which matches open a window? All of them must carry fields, else change nothing.
local ends = {}
for k = 1, K do
  local e = redis.call('HGET', keys[k].wkey, 'end')
  ends[k] = e and tonumber(e) or nil
end
local need = {}
for i = 1, M do
  local m = matches[i]
  if m.off > hwm then
    local e = ends[m.k]
    if e == nil or m.t >= e then
      if m.aid == '' then need[#need + 1] = i - 1 end
      ends[m.k] = m.t + keys[m.k].period
    end
  end
end
if #need > 0 then
  return {'need', unpack(need)}
end

-- Pass 2: apply.
local W = {}
local function load(k)
  if W[k] then return W[k] end
  local w = {exists = false, known = {}, added = {}}
  local h = redis.call('HGETALL', keys[k].wkey)
  if #h > 0 then
    for j = 1, #h, 2 do w[h[j]] = h[j + 1] end
    w.exists = true
    w.start, w['end'], w.thr = tonumber(w.start), tonumber(w['end']), tonumber(w.thr)
    w.cnt, w.fev, w.lev = tonumber(w.cnt), tonumber(w.fev), tonumber(w.lev)
    w.alerted, w.created = w.alerted == '1', tonumber(w.created or '0')
    w.ucnt = keys[k].uniq and redis.call('SCARD', keys[k].ukey) or 0
  end
  W[k] = w
  return w
end

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

for i = 1, M do
  local m = matches[i]
  if m.off > hwm then
    local key = keys[m.k]
    local w = load(m.k)
    if w.exists and m.t >= w['end'] then
      close(key, w, key.wkey, key.ukey)
      w = {exists = false, known = {}, added = {}}
      W[m.k] = w
    end
    if not w.exists then
      w.exists, w.start, w['end'], w.thr = true, m.t, m.t + key.period, key.thr
      w.cnt, w.ucnt, w.fev, w.lev, w.alerted, w.created = 0, 0, m.t, m.t, false, 0
      w.aid, w.fields, w.first, w.src = m.aid, m.fields, source .. ':' .. s(m.off), source
    end
    w.cnt = w.cnt + 1
    if m.t < w.fev then w.fev = m.t end
    if m.t > w.lev then w.lev = m.t end
    if key.uniq and string.sub(m.u, 1, 1) == '+' then
      local v = string.sub(m.u, 2)
      if not w.known[v] then
        w.known[v] = true
        if redis.call('SISMEMBER', key.ukey, v) == 0 then
          w.added[#w.added + 1] = v
          w.ucnt = w.ucnt + 1
        end
      end
    end
    w.dirty = true
    if w.src ~= source then
      redis.call('ZREM', prefix .. 'ends:' .. w.src, key.id)
      w.src = source
    end
    local count = key.uniq and w.ucnt or w.cnt
    if not w.alerted and count >= w.thr then
      w.alerted, w.created = true, m.t
      record(key.ns == 'Error' and 'rule_error' or 'alert', key, w)
      alerted = alerted + 1
      created[#created + 1] = m.k - 1
    end
  end
end

-- Write back what changed; windows expire on their own `grace` after their period.
for k, w in pairs(W) do
  local key = keys[k]
  if w.dirty then
    redis.call('HSET', key.wkey, 'start', s(w.start), 'end', s(w['end']), 'thr', s(w.thr),
      'cnt', s(w.cnt), 'fev', s(w.fev), 'lev', s(w.lev), 'alerted', w.alerted and '1' or '0',
      'created', s(w.created), 'aid', w.aid, 'fields', w.fields, 'first', w.first,
      'src', w.src, 'rule', key.rule, 'ns', key.ns, 'dedup', key.dedup,
      'uniq', key.uniq and '1' or '0')
    redis.call('PEXPIRE', key.wkey, key.period + grace)
    if #w.added > 0 then
      redis.call('SADD', key.ukey, unpack(w.added))
    end
    if key.uniq and w.ucnt > 0 then
      redis.call('PEXPIRE', key.ukey, key.period + grace)
    end
    redis.call('ZADD', KEYS[3], w['end'], key.id)
  end
end

for i = 1, S do
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
  if w and w.exists and redis.call('EXISTS', keys[k].wkey) == 1 then
    out[#out + 1] = w['end']
  else
    out[#out + 1] = ends[k] or 0
  end
end
for _, k in ipairs(created) do out[#out + 1] = k end
return out
