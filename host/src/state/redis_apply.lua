-- rulehost serve: applies one batch of matches of one source (a Kafka partition) to the
-- windows of one hash slot, atomically (host/src/state/redis.rs builds the call).
--
-- KEYS[1] hwm     hash: source -> offset of the last line applied (idempotence), and
--                 'clock:' .. source -> the source's event-time clock (the newest watermark)
-- KEYS[2] outbox  stream: alerts, alert updates and signals, appended in the same step
-- KEYS[3] ends    sorted set: window id -> end (ms), for the windows this source counts into
-- KEYS[2+2k], KEYS[3+2k] (k = 1..K): window k's hash and its unique values' set
--
-- ARGV: source, first offset, last offset, watermark ('' for none), window TTL grace (ms),
-- bookkeeping TTL (ms), key prefix (for another source's `ends`), K, S, mode ('m' or 'a'),
-- then K windows, then S signals (offset, record JSON).
--
-- Mode 'm', match by match: each window is id, RuleID, namespace, dedup, period ms,
-- threshold, counts unique (0/1), N, O, then N matches in input order (offset, time ms, and
-- for a window that counts unique values the value: '-' none, '+' value), then O openers
-- (match number 1..N, alert id, fields JSON: the matches that may open the window). Matches
-- are numbered across the windows in order (window 1's first).
--
-- Mode 'a', aggregated (a fresh batch whose window boundaries the worker guessed): each
-- window is id, RuleID, namespace, dedup, period ms, threshold, counts unique (0/1), G, then
-- G segments, each a run of the window's matches in input order that the worker expects in
-- one window: alert id and fields JSON of its first match ('' and '': it continues the live
-- window), first match's offset and time, matches, least and greatest time, L, then L items:
-- for a window that counts unique values, each distinct value of the segment in the order
-- it first came (value, its match's number 1..N in the segment, time, least and greatest
-- time of the segment up to it), else the times of the segment's first L = min(N,
-- threshold) matches. Where a segment's boundary is not where the worker expected, or the
-- batch was applied before, it answers {'detail'} and changes nothing: the worker sends the
-- call again match by match. The windows come out as match by match (a window not alerted
-- has a count under its threshold: the threshold is checked at every match).
--
-- Returns {'need', i...} (0-based numbers of matches that open a window but came without
-- fields; nothing was changed), {'detail'}, or {'ok', closed, alerted, next end,
-- end_1..end_K, alerts...}: windows closed, alerts created, the earliest end of this
-- source's windows in the slot (-1: none), each window's end now (0: none), and the window
-- index (0-based) of each alert created.

local function s(x) return string.format('%d', x) end

local source, first_offset = ARGV[1], tonumber(ARGV[2])
local last = tonumber(ARGV[3])
local watermark = ARGV[4] ~= '' and tonumber(ARGV[4]) or nil
local grace, keep = tonumber(ARGV[5]), tonumber(ARGV[6])
local prefix = ARGV[7]
local K, S = tonumber(ARGV[8]), tonumber(ARGV[9])
local aggregated = ARGV[10] == 'a'
-- The source's offset and clock, in one read.
local kept = redis.call('HMGET', KEYS[1], source, 'clock:' .. source)
local hwm = tonumber(kept[1] or '-1')
-- Every match is new unless the batch was (partly) applied before.
local fresh_batch = first_offset > hwm
if aggregated and not fresh_batch then
  return {'detail'}
end

local keys = {}
local a = 11
local numbered = 0
for k = 1, K do
  local key = {id = ARGV[a], rule = ARGV[a + 1], ns = ARGV[a + 2], dedup = ARGV[a + 3],
    period = tonumber(ARGV[a + 4]), thr = tonumber(ARGV[a + 5]), uniq = ARGV[a + 6] == '1',
    wkey = KEYS[2 + 2 * k], ukey = KEYS[3 + 2 * k], aid = {}, fields = {}}
  if aggregated then
    local g = tonumber(ARGV[a + 7])
    a = a + 8
    local segs = {}
    for i = 1, g do
      local seg = {aid = ARGV[a], fields = ARGV[a + 1], off = ARGV[a + 2],
        t = tonumber(ARGV[a + 3]), n = tonumber(ARGV[a + 4]), lo = tonumber(ARGV[a + 5]),
        hi = tonumber(ARGV[a + 6]), l = tonumber(ARGV[a + 7]), at = a + 8}
      a = seg.at + seg.l * (key.uniq and 5 or 1)
      segs[i] = seg
    end
    key.segs = segs
  else
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
  end
  keys[k] = key
end

-- What a window's counting reads; its alert id, first match and fields (a kilobyte or so)
-- are read only to write a record (`record`).
local COUNTED = {'start', 'end', 'thr', 'cnt', 'fev', 'lev', 'alerted', 'created', 'src'}

local function load(key)
  local w = {exists = false, known = {}, added = {}}
  local h = redis.call('HMGET', key.wkey, unpack(COUNTED))
  if h[1] then
    for j, name in ipairs(COUNTED) do w[name] = h[j] or nil end
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
if aggregated then
  -- Each segment must fall in one window, open one where it carries fields, and hold the
  -- time of a match that crosses the threshold.
  for k = 1, K do
    local key = keys[k]
    local w = load(key)
    W[k] = w
    local e = w.exists and w['end'] or nil
    local cnt, alerted, thr = w.cnt, w.alerted, w.thr
    for _, seg in ipairs(key.segs) do
      if e == nil or seg.t >= e then
        if seg.aid == '' then return {'detail'} end
        seg.opens = true
        e, cnt, alerted, thr = seg.t + key.period, 0, false, key.thr
      end
      if seg.hi >= e then return {'detail'} end
      if not key.uniq and not alerted then
        local crossing = math.max(1, thr - cnt)
        if crossing <= seg.n then
          if crossing > seg.l then return {'detail'} end
          alerted = true
        end
      end
      cnt = cnt + seg.n
    end
    ends[k] = e
  end
end
for k = 1, (aggregated and 0 or K) do
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
  if w.aid == nil then
    w.aid, w.first, w.fields = unpack(redis.call('HMGET', key.wkey, 'aid', 'first', 'fields'))
  end
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

-- A segment (mode 'a'): its matches counted at once, the one that crosses the threshold
-- found from its items.
local function alert_at(key, w, cnt, t, lo, hi)
  local total, first, last = w.cnt, w.fev, w.lev
  w.cnt = cnt
  if lo < w.fev then w.fev = lo end
  if hi > w.lev then w.lev = hi end
  w.alerted, w.created, w.crossed = true, t, true
  record(key.ns == 'Error' and 'rule_error' or 'alert', key, w)
  w.cnt, w.fev, w.lev = total, first, last
end

local function segment(k, key, w, seg)
  if seg.opens then
    if w.exists then close(key, w, key.wkey, key.ukey) end
    w = {exists = true, fresh = true, known = {}, added = {}, start = seg.t,
      ['end'] = seg.t + key.period, thr = key.thr, cnt = 0, ucnt = 0, fev = seg.t,
      lev = seg.t, alerted = false, created = 0, aid = seg.aid, fields = seg.fields,
      first = source .. ':' .. seg.off, src = source}
    W[k] = w
  end
  local p = seg.at
  local alerted_before = w.alerted
  if key.uniq then
    for _ = 1, seg.l do
      local v = ARGV[p]
      if not w.known[v] then
        w.known[v] = true
        if redis.call('SISMEMBER', key.ukey, v) == 0 then
          w.added[#w.added + 1] = v
          w.ucnt = w.ucnt + 1
          if not w.alerted and w.ucnt >= w.thr then
            alert_at(key, w, w.cnt + tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2]),
              tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4]))
          end
        end
      end
      p = p + 5
    end
  elseif not w.alerted then
    local crossing = math.max(1, w.thr - w.cnt)
    if crossing <= seg.n then
      local t = tonumber(ARGV[p + crossing - 1])
      local lo, hi = t, t
      for i = 0, crossing - 2 do
        local ti = tonumber(ARGV[p + i])
        if ti < lo then lo = ti end
        if ti > hi then hi = ti end
      end
      alert_at(key, w, w.cnt + crossing, t, lo, hi)
    end
  end
  if w.alerted and not alerted_before then
    alerted = alerted + 1
    created[#created + 1] = k - 1
  end
  w.cnt = w.cnt + seg.n
  if seg.lo < w.fev then w.fev = seg.lo end
  if seg.hi > w.lev then w.lev = seg.hi end
  w.dirty = true
  if w.src ~= source then
    redis.call('ZREM', prefix .. 'ends:' .. w.src, key.id)
    w.src, w.moved = source, true
  end
end

for k = 1, (aggregated and K or 0) do
  local key = keys[k]
  for _, seg in ipairs(key.segs) do
    segment(k, key, W[k], seg)
  end
end

for k = 1, (aggregated and 0 or K) do
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

-- Close this source's windows that its event time has passed (`gone`: the ids of those
-- closed here, some maybe written above).
local gone = {}
if watermark then
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', watermark)
  for _, id in ipairs(due) do
    local wkey, ukey = prefix .. 'w:' .. id, prefix .. 'u:' .. id
    -- A window that did not alert is closed without reading it whole.
    local seen = redis.call('HMGET', wkey, 'end', 'alerted', 'src')
    if seen[1] and tonumber(seen[1]) <= watermark then
      local w, key = {alerted = false, src = seen[3]}, {id = id}
      if seen[2] == '1' then
        local h = redis.call('HGETALL', wkey)
        for j = 1, #h, 2 do w[h[j]] = h[j + 1] end
        w.start, w['end'], w.thr = tonumber(w.start), tonumber(w['end']), tonumber(w.thr)
        w.cnt, w.fev, w.lev = tonumber(w.cnt), tonumber(w.fev), tonumber(w.lev)
        w.alerted, w.created = true, tonumber(w.created)
        key = {id = id, rule = w.rule, ns = w.ns, dedup = w.dedup, uniq = w.uniq == '1'}
        -- Only an alerted window's update record carries the count of unique values.
        w.ucnt = key.uniq and redis.call('SCARD', ukey) or 0
      end
      close(key, w, wkey, ukey)
      gone[id] = true
    elseif not seen[1] then
      redis.call('ZREM', KEYS[3], id)
    end
  end
end

-- The last offset applied, and the source's event-time clock for the worker that takes
-- the source over next (only forward: a batch applied again carries an older one); one
-- write for both.
local set = {}
if last > hwm then
  set = {source, s(last)}
end
if watermark then
  local clock = kept[2]
  if not clock or watermark > tonumber(clock) then
    set[#set + 1] = 'clock:' .. source
    set[#set + 1] = s(watermark)
  end
end
if #set > 0 then
  redis.call('HSET', KEYS[1], unpack(set))
end
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[3], keep)

local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local out = {'ok', closed, alerted, #first > 0 and tonumber(first[2]) or -1}
for k = 1, K do
  local w = W[k]
  -- A window written here and not closed by the watermark since.
  if w.exists and w.dirty and not gone[keys[k].id] then
    out[#out + 1] = w['end']
  else
    out[#out + 1] = ends[k] or 0
  end
end
for _, k in ipairs(created) do out[#out + 1] = k end
return out
