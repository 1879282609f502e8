-- Named statements of the SQLite job store (loaded by downloader.store.queries).
--
-- Blocks named migration_NNNN are applied in order inside BEGIN IMMEDIATE; PRAGMA user_version
-- holds how many have been applied. Never edit an applied migration: add the next one.
--
-- Every write to a running job is a compare-and-set on (id, state, lease_token, lease_until):
-- a write that matches no row is then explained by lease_status (see rows.refusal).

-- name: migration_0001
CREATE TABLE jobs (
    seq         INTEGER PRIMARY KEY,  -- creation order; an alias of rowid, stable across VACUUM
    id          TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    payload     TEXT NOT NULL,
    progress    TEXT NOT NULL DEFAULT '{}',
    result      TEXT NOT NULL DEFAULT '{}',
    bot_id      TEXT,
    parent      TEXT,
    priority    INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    run_after   REAL NOT NULL,
    last_error  TEXT,
    lease_token TEXT,  -- kept after the attempt ends, to tell "already finished" from "lost"
    worker      TEXT,
    lease_until REAL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
) STRICT;
-- Claim: one ordered range per kind, holding only PENDING rows, so a claim reads a few
-- index entries however many jobs are done, parked for later, or of other kinds.
CREATE INDEX jobs_claim ON jobs (kind, priority DESC, run_after, seq) WHERE state = 'pending';
-- Everything else in a given state: reclaim_expired (running, by lease_until), requeue and
-- listings of failed jobs. Running and failed rows are few, done rows many: never scan "done".
CREATE INDEX jobs_state ON jobs (state, lease_until);
-- workers(): running jobs per worker.
CREATE INDEX jobs_worker ON jobs (worker) WHERE state = 'running';
-- counts() (covering, already grouped) and list_jobs(kind=, state=) in creation order.
CREATE INDEX jobs_kind_state ON jobs (kind, state);
CREATE INDEX jobs_parent ON jobs (parent);
-- per-bot counts (covering) and list_jobs(bot_id=).
CREATE INDEX jobs_bot ON jobs (bot_id, kind, state);
CREATE TABLE workers (
    worker    TEXT PRIMARY KEY,
    last_seen REAL NOT NULL
) STRICT;
CREATE TABLE deliveries (
    message_id TEXT PRIMARY KEY,
    first_seen REAL NOT NULL
) STRICT;
CREATE TABLE cursors (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
) STRICT;

-- name: migration_0002
-- The shared request budget (downloader.store.ratebudget): a sliding-window log of recent
-- requests per endpoint class, and a pause per class set when the API answers 429.
CREATE TABLE rate_classes (
    cls          TEXT PRIMARY KEY,
    paused_until REAL NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE rate_requests (
    cls TEXT NOT NULL,
    at  REAL NOT NULL
) STRICT;
CREATE INDEX rate_requests_cls_at ON rate_requests (cls, at);

-- name: migration_0003
-- Parked versus due. A claim must find the best DUE job without walking jobs parked for
-- later (a poll_bot waiting for the call to end, a finalize waiting for its parts, a burst
-- of parts backing off after 503s): with priorities that differ per recording, no index
-- order serves both "run_after <= now" and "highest priority first". So each pending job
-- is parked (due = 0) or due (due = 1); claims read only due ones, in exactly the claim
-- order, and first promote the parked jobs whose time has come (each job once).
ALTER TABLE jobs ADD COLUMN due INTEGER NOT NULL DEFAULT 1;
UPDATE jobs SET due = 0 WHERE state = 'pending';  -- the first claim promotes the due ones
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (kind, priority DESC, run_after, seq)
    WHERE state = 'pending' AND due = 1;
CREATE INDEX jobs_parked ON jobs (run_after) WHERE state = 'pending' AND due = 0;

-- name: insert_job
INSERT INTO jobs (id, kind, key, state, payload, bot_id, parent, priority, run_after, due,
                  created_at, updated_at)
VALUES (:id, :kind, :key, 'pending', :payload, :bot_id, :parent, :priority, :run_after,
        :run_after <= :now, :now, :now)
ON CONFLICT (id) DO NOTHING

-- name: update_payload
UPDATE jobs SET payload = :payload, updated_at = :now
WHERE id = :id

-- name: rearm_failed
UPDATE jobs SET state = 'pending', attempts = 0, run_after = :run_after,
                due = :run_after <= :now, worker = NULL,
                lease_until = NULL, updated_at = :now
WHERE id = :id AND state = 'failed'

-- name: rearm_waiting
UPDATE jobs SET run_after = :run_after, due = :run_after <= :now, updated_at = :now
WHERE id = :id AND state = 'pending' AND run_after > :run_after

-- name: promote_due
-- INDEXED BY: without statistics the planner would walk every pending job via jobs_state;
-- it also makes the statement fail loudly should the index ever stop matching.
UPDATE jobs INDEXED BY jobs_parked SET due = 1
WHERE state = 'pending' AND due = 0 AND run_after <= :now

-- name: any_promotable
SELECT 1 FROM jobs INDEXED BY jobs_parked
WHERE state = 'pending' AND due = 0 AND run_after <= :now LIMIT 1

-- name: claim_candidates
-- run_after <= :now only matters if the clock went back after a job was promoted.
SELECT seq, priority, run_after FROM jobs INDEXED BY jobs_claim
WHERE state = 'pending' AND due = 1 AND kind = :kind AND run_after <= :now
ORDER BY priority DESC, run_after, seq
LIMIT :limit

-- name: claim_take
UPDATE jobs SET state = 'running', lease_token = :token, worker = :worker,
                lease_until = :lease_until, updated_at = :now
WHERE seq = :seq AND state = 'pending'
RETURNING *

-- name: touch_worker
INSERT INTO workers (worker, last_seen) VALUES (:worker, :now)
ON CONFLICT (worker) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)

-- name: lease_status
SELECT state, lease_token, lease_until FROM jobs WHERE id = :id

-- name: heartbeat
UPDATE jobs SET lease_until = :lease_until, updated_at = :now
WHERE id = :id AND state = 'running' AND lease_token = :token AND lease_until >= :now
RETURNING worker

-- name: checkpoint
UPDATE jobs SET progress = :progress, updated_at = :now
WHERE id = :id AND state = 'running' AND lease_token = :token AND lease_until >= :now

-- name: finish
UPDATE jobs SET state = 'done', result = :result, worker = NULL, lease_until = NULL,
                updated_at = :now
WHERE id = :id AND state = 'running' AND lease_token = :token AND lease_until >= :now

-- name: reschedule
-- (the run went fine, so the last error is history: clearing it lets reports tell a job
-- that waits for the remote side from one that retries after errors)
UPDATE jobs SET state = 'pending', run_after = :run_after, due = :run_after <= :now,
                payload = coalesce(:payload, payload), progress = coalesce(:progress, progress),
                last_error = NULL, worker = NULL, lease_until = NULL, updated_at = :now
WHERE id = :id AND state = 'running' AND lease_token = :token AND lease_until >= :now

-- name: retry_later
UPDATE jobs SET state = 'pending', run_after = :run_after, due = :run_after <= :now,
                attempts = attempts + 1,
                last_error = :error, progress = coalesce(:progress, progress),
                worker = NULL, lease_until = NULL, updated_at = :now
WHERE id = :id AND state = 'running' AND lease_token = :token AND lease_until >= :now

-- name: fail
UPDATE jobs SET state = 'failed', attempts = attempts + 1, last_error = :error,
                worker = NULL, lease_until = NULL, updated_at = :now
WHERE id = :id AND state = 'running' AND lease_token = :token AND lease_until >= :now

-- name: release
UPDATE jobs SET state = 'pending', run_after = :now, due = 1, worker = NULL,
                lease_until = NULL, updated_at = :now
WHERE id = :id AND state = 'running' AND lease_token = :token AND lease_until >= :now

-- name: reclaim_expired
UPDATE jobs SET state = 'pending', attempts = attempts + 1, run_after = min(run_after, :now), due = 1,
                last_error = 'lease expired (held by ' || coalesce(worker, '?') || ')',
                lease_token = NULL, worker = NULL, lease_until = NULL, updated_at = :now
WHERE state = 'running' AND lease_until < :now

-- name: reclaim_worker
UPDATE jobs SET state = 'pending', attempts = attempts + 1, run_after = min(run_after, :now), due = 1,
                last_error = 'holder exited (' || worker || ')',
                lease_token = NULL, worker = NULL, lease_until = NULL, updated_at = :now
WHERE state = 'running' AND worker = :worker

-- name: requeue_failed
UPDATE jobs SET state = 'pending', attempts = 0, run_after = :now, due = 1, lease_token = NULL,
                updated_at = :now
WHERE state = 'failed'

-- name: requeue_ids
UPDATE jobs SET state = 'pending', attempts = 0, run_after = :now, due = 1, lease_token = NULL,
                updated_at = :now
-- "+state" keeps the planner on the id index: the state index would walk every done job.
WHERE id IN (SELECT value FROM json_each(:ids)) AND +state IN ('failed', 'done')

-- name: get_job
SELECT * FROM jobs WHERE id = :id

-- name: list_jobs
SELECT * FROM jobs

-- name: counts
SELECT kind, state, count(*) AS n FROM jobs GROUP BY kind, state

-- name: counts_for_bots
SELECT kind, state, count(*) AS n FROM jobs
WHERE bot_id IN (SELECT value FROM json_each(:bot_ids))
GROUP BY kind, state

-- name: remember_delivery
INSERT INTO deliveries (message_id, first_seen) VALUES (:message_id, :now)
ON CONFLICT (message_id) DO NOTHING

-- name: get_cursor
SELECT value FROM cursors WHERE name = :name

-- name: set_cursor
INSERT INTO cursors (name, value, updated_at) VALUES (:name, :value, :now)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at

-- name: swap_cursor
INSERT INTO cursors (name, value, updated_at) VALUES (:name, :value, :now)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
WHERE cursors.value = :expected

-- name: workers
SELECT w.worker, w.last_seen,
       (SELECT count(*) FROM jobs j WHERE j.state = 'running' AND j.worker = w.worker) AS running
FROM workers w
WHERE w.last_seen >= :since
   OR EXISTS (SELECT 1 FROM jobs j WHERE j.state = 'running' AND j.worker = w.worker)
ORDER BY w.worker

-- name: forget_workers
DELETE FROM workers
WHERE last_seen < :before
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.state = 'running' AND j.worker = workers.worker)

-- name: rate_paused_until
SELECT paused_until FROM rate_classes WHERE cls = :cls

-- name: rate_prune
DELETE FROM rate_requests WHERE cls = :cls AND at <= :now - :window

-- name: rate_window
SELECT at FROM rate_requests WHERE cls = :cls ORDER BY at

-- name: rate_record
INSERT INTO rate_requests (cls, at) VALUES (:cls, :now)

-- name: pause_class
INSERT INTO rate_classes (cls, paused_until) VALUES (:cls, :until)
ON CONFLICT (cls) DO UPDATE SET paused_until = max(paused_until, excluded.paused_until)

-- name: integrity_check
PRAGMA integrity_check

-- name: quick_check
PRAGMA quick_check
