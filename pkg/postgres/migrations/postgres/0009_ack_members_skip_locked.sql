-- 0009_ack_members_skip_locked: an ack flush never waits for a send.
--
-- ack_members (0006) locks its rows in (thread, user) order and waits for each one a
-- send holds: every store moves the sender's read mark in the sender's membership row,
-- and in one-to-one traffic every user both sends and acks. On a busy 2-vCPU machine a
-- flush of a few hundred memberships waited for one in-flight send after another
-- (pg_stat_activity: ack_members in Lock:transactionid for 30-60 ms, three hosts'
-- flushes at once), and every send to a row the flush had already locked waited for
-- the whole flush: the store stage's p99 went to 60-180 ms at 500 msg/s while its p50
-- stayed under 1 ms.
--
-- ack_members_nowait applies the acks whose rows it can lock at once and returns the
-- others (SKIP LOCKED). The caller (pkg/postgres Ack) hands those few to ack_members,
-- which waits for them as before, so every ack is durable when Ack returns. Rows whose
-- mark is already at or past the ack, and pairs that are no membership, are neither
-- locked nor returned. ack_members stays for hosts of the previous version during a
-- rolling upgrade.
CREATE FUNCTION ack_members_nowait(p_threads uuid[], p_users uuid[], p_seqs bigint[])
RETURNS TABLE (thread_id uuid, user_id uuid, seq bigint)
LANGUAGE sql AS $$
    WITH want AS (
        SELECT x.thread_id, x.user_id, x.seq
        FROM unnest(p_threads, p_users, p_seqs) AS x(thread_id, user_id, seq)
    ), locked AS (
        SELECT tm.thread_id, tm.user_id, w.seq
        FROM thread_members tm
        JOIN want w ON tm.thread_id = w.thread_id AND tm.user_id = w.user_id
        WHERE tm.acked_seq < w.seq
        FOR UPDATE OF tm SKIP LOCKED
    ), done AS (
        UPDATE thread_members tm SET acked_seq = l.seq
        FROM locked l
        WHERE tm.thread_id = l.thread_id AND tm.user_id = l.user_id
        RETURNING tm.thread_id, tm.user_id
    )
    SELECT w.thread_id, w.user_id, w.seq
    FROM want w
    JOIN thread_members tm ON tm.thread_id = w.thread_id AND tm.user_id = w.user_id
    WHERE tm.acked_seq < w.seq
      AND NOT EXISTS (SELECT 1 FROM done d WHERE d.thread_id = w.thread_id AND d.user_id = w.user_id);
$$;
