-- 0006_ack_members: a host's ack flush in one statement, in autocommit.
--
-- Ack (pkg/postgres) flushed a host's acks as BEGIN, a SELECT ... FOR UPDATE of the
-- memberships in (thread, user) order, the UPDATE, and COMMIT: four round trips with
-- the rows locked from the second to the end of the fourth. Every sender's store
-- (store_message, store_messages) moves its own read mark in the same rows, and in
-- one-to-one traffic every user both sends and acks, so under load a send often
-- waited behind a flush holding its row for a few milliseconds (pg_stat_activity
-- showed Lock:transactionid among the active backends at 1,000 msg/s), holding its
-- thread's lock meanwhile. Here the locks are held for one call and its commit.
--
-- Rows are still locked in (thread_id, user_id) order, the order of every multi-row
-- writer of thread_members, so a flush never deadlocks with a batch of sends or
-- another host's flush. A row whose mark is already at or past its ack is not
-- locked at all: marks only move forward.
CREATE FUNCTION ack_members(p_threads uuid[], p_users uuid[], p_seqs bigint[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM thread_members tm
        JOIN unnest(p_threads, p_users, p_seqs) AS x(thread_id, user_id, seq)
          ON tm.thread_id = x.thread_id AND tm.user_id = x.user_id
        WHERE tm.acked_seq < x.seq
        ORDER BY tm.thread_id, tm.user_id
        FOR UPDATE OF tm;
    UPDATE thread_members tm SET acked_seq = x.seq
    FROM unnest(p_threads, p_users, p_seqs) AS x(thread_id, user_id, seq)
    WHERE tm.thread_id = x.thread_id AND tm.user_id = x.user_id AND tm.acked_seq < x.seq;
END
$$;
