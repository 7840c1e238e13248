-- The two seed rules as DuckDB SQL, with Panther's windows: `make bench`'s DuckDB peer
-- (issue 13). Run by `bench/duckdb/run.py`, which sets the variable `input` (a JSON-lines
-- file) and `threads`, and prints the alerts.
--
-- A window is keyed by (rule, dedup string). It opens at the first match with no live
-- window and covers [start, start + DedupPeriodMinutes); the next window opens at the
-- first match at or after its end. Its alert is raised when its matches (or, for the
-- multi-workspace rule, its distinct workspaces) reach the Threshold. Event time is
-- `p_event_time`, else `timestamp` (epoch ms); the input is in time order, as the
-- generated bench file is.
--
-- What this cannot say as rulehost does (the bench prints it beside the table):
-- * null vs missing: `read_ndjson` gives SQL NULL for both, so a `workspaceId: null` in an
--   install title prints the default ("Unknown Workspace") where Panther prints "None";
-- * keys are matched exactly: no case-insensitive fallback (`WorkspaceID`), and an object
--   with a duplicate key is an error, where Python keeps the last value;
-- * values are cast by SQL, not printed by Python's `str()`: a float, boolean or object
--   `workspaceId` or email prints differently;
-- * a value of another type than declared (an object where a string is) is an error;
-- * a `timestamp` or `p_event_time` in a format other than epoch ms or ISO 8601.

CREATE OR REPLACE TEMP TABLE matches AS
WITH events AS (
    SELECT
        coalesce(epoch_ms(try_cast(p_event_time AS TIMESTAMP)), "timestamp") AS t,
        workspaceId AS workspace,
        actionName AS action,
        userIdentity.email AS email
    FROM read_ndjson(
        getvariable('input'),
        columns = {
            p_event_time: 'VARCHAR',
            "timestamp": 'BIGINT',
            workspaceId: 'VARCHAR',
            actionName: 'VARCHAR',
            userIdentity: 'STRUCT(email VARCHAR)'
        }
    )
)
-- Databricks.Audit.AccessToMultipleWorkspaces: a real user reaching a workspace; dedup on
-- the user, threshold 5 distinct workspaces within 1440 minutes.
SELECT
    'Databricks.Audit.AccessToMultipleWorkspaces' AS rule_id,
    email AS dedup,
    workspace AS uniq,
    t,
    1440 * 60000 AS period_ms,
    5 AS threshold
FROM events
WHERE email IS NOT NULL
  AND email NOT IN ('System-User', '', 'unknown')
  AND workspace IS NOT NULL
UNION ALL
-- Databricks.Audit.InstallLibraryAllClusters: no dedup function, so Panther dedups on the
-- title; threshold 1 within the default 60 minutes.
SELECT
    'Databricks.Audit.InstallLibraryAllClusters',
    'Library installed on all clusters in workspace '
        || coalesce(workspace, 'Unknown Workspace')
        || ' by ' || coalesce(email, 'Unknown Actor'),
    NULL,
    t,
    60 * 60000,
    1
FROM events
WHERE action = 'installLibraryOnAllClusters';

-- Windows are per key: number the keys, so that the steps below sort and join integers.
CREATE OR REPLACE TEMP TABLE keys AS
SELECT row_number() OVER () AS k, rule_id, dedup, period_ms, threshold
FROM (SELECT DISTINCT rule_id, dedup, period_ms, threshold FROM matches);

CREATE OR REPLACE TEMP TABLE keyed AS
SELECT keys.k, matches.t, matches.uniq
FROM matches JOIN keys USING (rule_id, dedup);

-- Window starts, anchored: each key's first match, then the first match at or after the
-- previous start + period (one step of the recursion per window of a key).
CREATE OR REPLACE TEMP TABLE starts AS
WITH RECURSIVE starts(k, period_ms, start_ms) AS (
    SELECT k, any_value(period_ms), min(t)
    FROM keyed JOIN keys USING (k)
    GROUP BY k
    UNION ALL
    SELECT s.k, s.period_ms, min(m.t)
    FROM starts s
    JOIN keyed m ON m.k = s.k AND m.t >= s.start_ms + s.period_ms
    GROUP BY s.k, s.period_ms, s.start_ms
)
SELECT k, start_ms FROM starts;

-- Each match falls in the latest window that started at or before it; a window alerts when
-- its count reaches the threshold.
WITH windows AS (
    SELECT m.k, s.start_ms, count(*) AS event_count, count(DISTINCT m.uniq) AS uniques
    FROM keyed m
    ASOF JOIN starts s ON m.k = s.k AND m.t >= s.start_ms
    GROUP BY m.k, s.start_ms
)
SELECT
    keys.rule_id,
    keys.dedup,
    w.start_ms,
    w.event_count,
    CASE WHEN keys.rule_id = 'Databricks.Audit.AccessToMultipleWorkspaces' THEN w.uniques END
        AS unique_count
FROM windows w JOIN keys USING (k)
WHERE CASE WHEN keys.rule_id = 'Databricks.Audit.AccessToMultipleWorkspaces'
           THEN w.uniques ELSE w.event_count END >= keys.threshold
ORDER BY w.start_ms, keys.rule_id, keys.dedup;
