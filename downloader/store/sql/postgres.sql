-- Named statements of the PostgreSQL job store (loaded by downloader.store.queries).
--
-- Everything lives in the schema recall_dl (the pool's search_path), so the store can share
-- a database with other applications. Migrations migration_NNNN run in order, inside one
-- transaction holding pg_advisory_xact_lock, so hosts starting together apply them once.
--
-- Times are epoch seconds (double precision) from the DATABASE clock: rdl_now($1) is now()
-- unless a test passes its own clock as $1. Every query takes that override as $1.
-- Every write to a running job is a compare-and-set on (id, state, lease_token, lease_until).

-- name: migration_0001
CREATE FUNCTION rdl_now(override double precision) RETURNS double precision
    LANGUAGE sql STABLE
    AS $$ SELECT coalesce(override, extract(epoch FROM now())::double precision) $$;
CREATE TABLE jobs (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- creation order
    id          text NOT NULL UNIQUE,
    kind        text NOT NULL,
    key         text NOT NULL,
    state       text NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    payload     jsonb NOT NULL,
    progress    jsonb NOT NULL DEFAULT '{}',
    result      jsonb NOT NULL DEFAULT '{}',
    bot_id      text,
    parent      text,
    priority    integer NOT NULL DEFAULT 0,
    attempts    integer NOT NULL DEFAULT 0,
    run_after   double precision NOT NULL,
    last_error  text,
    lease_token text,  -- kept after the attempt ends, to tell "already finished" from "lost"
    worker      text,
    lease_until double precision,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL
);
-- Claim: one ordered range per kind over PENDING rows only (see the claim query).
CREATE INDEX jobs_claim ON jobs (kind, priority DESC, run_after, seq) WHERE state = 'pending';
-- reclaim_expired, requeue, failed listings; never walks the (many) done rows.
CREATE INDEX jobs_state ON jobs (state, lease_until);
CREATE INDEX jobs_worker ON jobs (worker) WHERE state = 'running';
CREATE INDEX jobs_kind_state ON jobs (kind, state);
CREATE INDEX jobs_parent ON jobs (parent);
CREATE INDEX jobs_bot ON jobs (bot_id, kind, state);
CREATE TABLE workers (
    worker    text PRIMARY KEY,
    last_seen double precision NOT NULL
);
CREATE TABLE deliveries (
    message_id text PRIMARY KEY,
    first_seen double precision NOT NULL
);
CREATE TABLE cursors (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    updated_at double precision NOT NULL
);

-- name: migration_0002
-- The shared request budget (downloader.store.ratebudget): a sliding-window log of recent
-- requests per endpoint class, and a pause per class set when the API answers 429.
-- The class row doubles as the lock that serialises hosts acquiring slots of one class.
CREATE TABLE rate_classes (
    cls          text PRIMARY KEY,
    paused_until double precision NOT NULL DEFAULT 0
);
CREATE TABLE rate_requests (
    cls text NOT NULL,
    at  double precision NOT NULL
);
CREATE INDEX rate_requests_cls_at ON rate_requests (cls, at);
-- One round trip per API request: 0 when it may go now (recorded), else seconds to wait.
CREATE FUNCTION rdl_acquire_rate_slot(
    override double precision, p_cls text, p_limit integer, p_window double precision
) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    t      double precision := rdl_now(override);
    paused double precision;
    n      integer;
    oldest double precision;
BEGIN
    INSERT INTO rate_classes (cls) VALUES (p_cls) ON CONFLICT (cls) DO NOTHING;
    SELECT paused_until INTO paused FROM rate_classes WHERE cls = p_cls FOR UPDATE;
    IF paused > t THEN
        RETURN paused - t;
    END IF;
    DELETE FROM rate_requests WHERE cls = p_cls AND at <= t - p_window;
    SELECT count(*) INTO n FROM rate_requests WHERE cls = p_cls;
    IF n < p_limit THEN
        INSERT INTO rate_requests (cls, at) VALUES (p_cls, t);
        RETURN 0;
    END IF;
    -- The request may go when enough of the window's requests have aged out of it.
    SELECT at INTO oldest FROM rate_requests WHERE cls = p_cls
    ORDER BY at OFFSET n - p_limit LIMIT 1;
    RETURN oldest + p_window - t;
END $$;

-- name: migration_0003
-- Parked versus due (see sql/sqlite.sql, migration_0003, for why): claims read only due
-- jobs, in exactly the claim order, after promoting parked jobs whose time has come.
ALTER TABLE jobs ADD COLUMN due boolean NOT NULL DEFAULT true;
UPDATE jobs SET due = false WHERE state = 'pending';  -- the first claim promotes the due ones
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (kind, priority DESC, run_after, seq)
    WHERE state = 'pending' AND due;
CREATE INDEX jobs_parked ON jobs (run_after) WHERE state = 'pending' AND NOT due;

-- name: migrate_lock
SELECT pg_advisory_xact_lock(hashtext('recall-dl:migrate'))

-- name: migrate_prepare
CREATE SCHEMA IF NOT EXISTS recall_dl;
CREATE TABLE IF NOT EXISTS recall_dl.schema_version (version integer NOT NULL);

-- name: schema_version
SELECT coalesce(max(version), 0) FROM recall_dl.schema_version

-- name: set_schema_version
WITH gone AS (DELETE FROM recall_dl.schema_version)
INSERT INTO recall_dl.schema_version (version) VALUES ($1)

-- name: enqueue
-- Variants replace {on_conflict}: the three OnConflict modes (see postgres.ON_CONFLICT).
-- (xmax = 0) is true for a row this statement inserted, false for one it updated.
INSERT INTO jobs AS j (id, kind, key, state, payload, bot_id, parent, priority, run_after,
                       due, created_at, updated_at)
SELECT v.id, v.kind, v.key, 'pending', v.payload::jsonb, v.bot_id, v.parent, v.priority,
       CASE WHEN v.run_after > 0 THEN v.run_after ELSE rdl_now($1) END,
       v.run_after <= rdl_now($1), rdl_now($1), rdl_now($1)
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::integer[], $9::double precision[])
     WITH ORDINALITY AS v(id, kind, key, payload, bot_id, parent, priority, run_after, ord)
ORDER BY v.ord
{on_conflict}
RETURNING (j.xmax = 0) AS inserted

-- name: promote_due
-- SKIP LOCKED: concurrent claimers promote disjoint rows instead of waiting on each other.
UPDATE jobs SET due = true
WHERE seq IN (SELECT seq FROM jobs
              WHERE state = 'pending' AND NOT due AND run_after <= rdl_now($1)
              FOR UPDATE SKIP LOCKED)

-- name: claim
-- One ordered, limited index range per wanted kind (so a claim for API kinds never walks
-- thousands of pending parts), merged; SKIP LOCKED makes concurrent claimers pass over each
-- other's rows instead of waiting or taking them twice.
WITH picked AS (
    SELECT c.seq
    FROM unnest($2::text[]) AS k(kind)
    CROSS JOIN LATERAL (
        SELECT j.seq, j.priority, j.run_after FROM jobs j
        WHERE j.state = 'pending' AND j.due AND j.kind = k.kind AND j.run_after <= rdl_now($1)
        ORDER BY j.priority DESC, j.run_after, j.seq
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) AS c
    ORDER BY c.priority DESC, c.run_after, c.seq
    LIMIT $3
)
UPDATE jobs SET state = 'running',
                lease_token = replace(gen_random_uuid()::text, '-', ''),
                worker = $4, lease_until = rdl_now($1) + $5, updated_at = rdl_now($1)
FROM picked
WHERE jobs.seq = picked.seq
RETURNING jobs.*

-- name: touch_worker
INSERT INTO workers (worker, last_seen) VALUES ($2, rdl_now($1))
ON CONFLICT (worker) DO UPDATE SET last_seen = greatest(workers.last_seen, excluded.last_seen)

-- name: lease_status
SELECT state, lease_token, lease_until, rdl_now($1) AS now FROM jobs WHERE id = $2

-- name: heartbeat
-- One statement, never a transaction left open by the client between statements: a host
-- frozen (SIGSTOP, a paused VM, a partition) inside such a transaction would keep the job's
-- row locked, and every other host's reclaim_expired would wait on that lock.
WITH renewed AS (
    UPDATE jobs SET lease_until = rdl_now($1) + $4, updated_at = rdl_now($1)
    WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_until >= rdl_now($1)
    RETURNING worker
), touched AS (
    INSERT INTO workers (worker, last_seen) SELECT worker, rdl_now($1) FROM renewed
    ON CONFLICT (worker) DO UPDATE
    SET last_seen = greatest(workers.last_seen, excluded.last_seen)
)
SELECT worker FROM renewed

-- name: checkpoint
UPDATE jobs SET progress = $4::jsonb, updated_at = rdl_now($1)
WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_until >= rdl_now($1)

-- name: finish
UPDATE jobs SET state = 'done', result = $4::jsonb, worker = NULL, lease_until = NULL,
                updated_at = rdl_now($1)
WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_until >= rdl_now($1)

-- name: reschedule
-- (the run went fine, so the last error is history: clearing it lets reports tell a job
-- that waits for the remote side from one that retries after errors)
UPDATE jobs SET state = 'pending', run_after = $4, due = $4 <= rdl_now($1),
                payload = coalesce($5::jsonb, payload), progress = coalesce($6::jsonb, progress),
                last_error = NULL, worker = NULL, lease_until = NULL, updated_at = rdl_now($1)
WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_until >= rdl_now($1)

-- name: retry_later
UPDATE jobs SET state = 'pending', run_after = $4, due = $4 <= rdl_now($1),
                attempts = attempts + 1,
                last_error = $5, progress = coalesce($6::jsonb, progress),
                worker = NULL, lease_until = NULL, updated_at = rdl_now($1)
WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_until >= rdl_now($1)

-- name: fail
UPDATE jobs SET state = 'failed', attempts = attempts + 1, last_error = $4,
                worker = NULL, lease_until = NULL, updated_at = rdl_now($1)
WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_until >= rdl_now($1)

-- name: release
UPDATE jobs SET state = 'pending', run_after = rdl_now($1), due = true, worker = NULL,
                lease_until = NULL, updated_at = rdl_now($1)
WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_until >= rdl_now($1)

-- name: reclaim_expired
UPDATE jobs SET state = 'pending', attempts = attempts + 1, run_after = least(run_after, rdl_now($1)), due = true,
                last_error = 'lease expired (held by ' || coalesce(worker, '?') || ')',
                lease_token = NULL, worker = NULL, lease_until = NULL, updated_at = rdl_now($1)
WHERE state = 'running' AND lease_until < rdl_now($1)

-- name: reclaim_worker
UPDATE jobs SET state = 'pending', attempts = attempts + 1, run_after = least(run_after, rdl_now($1)), due = true,
                last_error = 'holder exited (' || worker || ')',
                lease_token = NULL, worker = NULL, lease_until = NULL, updated_at = rdl_now($1)
WHERE state = 'running' AND worker = $2

-- name: forget_workers
DELETE FROM workers w
WHERE w.last_seen < rdl_now($1) - $2
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.state = 'running' AND j.worker = w.worker)

-- name: requeue_failed
UPDATE jobs SET state = 'pending', attempts = 0, run_after = rdl_now($1), due = true,
                lease_token = NULL,
                updated_at = rdl_now($1)
WHERE state = 'failed'

-- name: requeue_ids
UPDATE jobs SET state = 'pending', attempts = 0, run_after = rdl_now($1), due = true,
                lease_token = NULL,
                updated_at = rdl_now($1)
WHERE id = ANY($2::text[]) AND state IN ('failed', 'done')

-- name: get_job
SELECT * FROM jobs WHERE id = $1

-- name: list_jobs
SELECT * FROM jobs

-- name: counts
SELECT kind, state, count(*) AS n FROM jobs GROUP BY kind, state

-- name: counts_for_bots
SELECT kind, state, count(*) AS n FROM jobs WHERE bot_id = ANY($1::text[]) GROUP BY kind, state

-- name: remember_delivery
INSERT INTO deliveries (message_id, first_seen) VALUES ($2, rdl_now($1))
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id

-- name: get_cursor
SELECT value FROM cursors WHERE name = $1

-- name: set_cursor
INSERT INTO cursors (name, value, updated_at) VALUES ($2, $3, rdl_now($1))
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at

-- name: swap_cursor
INSERT INTO cursors (name, value, updated_at) VALUES ($2, $3, rdl_now($1))
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
WHERE cursors.value = $4

-- name: workers
SELECT w.worker, w.last_seen,
       (SELECT count(*) FROM jobs j WHERE j.state = 'running' AND j.worker = w.worker) AS running
FROM workers w
WHERE w.last_seen >= rdl_now($1) - $2
   OR EXISTS (SELECT 1 FROM jobs j WHERE j.state = 'running' AND j.worker = w.worker)
ORDER BY w.worker

-- name: acquire_rate_slot
SELECT rdl_acquire_rate_slot($1, $2, $3, $4)

-- name: pause_class
INSERT INTO rate_classes (cls, paused_until) VALUES ($1, $2)
ON CONFLICT (cls) DO UPDATE SET paused_until = greatest(rate_classes.paused_until,
                                                        excluded.paused_until)

-- name: rate_paused_until
SELECT paused_until FROM rate_classes WHERE cls = $1

-- name: sanity
SELECT count(*) FROM (SELECT 1 FROM jobs LIMIT 1) AS j
