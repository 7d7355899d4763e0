-- 0005_store_messages_set_based: store_messages_bulk stores a large batch with a
-- fixed number of statements.
--
-- store_messages (0004) runs five statements per message in a loop; in a busy
-- thread's batch every one of them touches the same thread row again (a longer version
-- chain each time): a batch of dozens took 15-30 ms under load, which capped one
-- thread near 2,000 messages a second even on an idle machine. store_messages_bulk,
-- after the same locks (threads in id order, the senders' memberships in (thread,
-- user) order), runs one statement that
-- classifies the batch (a repeat of (sender_id, client_msg_id), stored before or
-- earlier in this batch; a sender who is not a member), numbers each thread's new
-- messages after its last_seq, inserts them all, moves each thread's last_seq and each
-- sender's read mark once, and answers every index in order. The answer is unchanged:
-- (idx, seq, members, status), members only on a thread's first created row.
-- A repeat committed by another host meanwhile still fails the INSERT with
-- unique_violation and rolls the batch back; the caller then stores one by one.
--
-- Planning this statement costs about 0.7 ms a call (a custom plan each time; a
-- function-level SET plan_cache_mode made PostgreSQL's CPU per message explode, it was
-- tried), so small batches, most of one-to-one traffic, stay with the loop: the
-- caller (pkg/postgres committer) uses this from bulkBatch messages up. Measured in one
-- session: a batch of 2 takes 1.1 ms here and 0.38 ms in the loop; of 30, 2.1 ms here
-- and 9.6 ms in the loop.
CREATE FUNCTION store_messages_bulk(
    p_ids uuid[], p_threads uuid[], p_senders uuid[], p_client_msg_ids text[], p_bodies text[], p_now timestamptz
) RETURNS TABLE (idx int, seq bigint, members text, status text)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM threads WHERE id = ANY (p_threads) ORDER BY id FOR UPDATE;
    PERFORM 1 FROM thread_members tm
        JOIN unnest(p_threads, p_senders) AS x(thread_id, user_id)
          ON tm.thread_id = x.thread_id AND tm.user_id = x.user_id
        ORDER BY tm.thread_id, tm.user_id
        FOR UPDATE OF tm;
    RETURN QUERY
    WITH b AS (
        SELECT t.i::int AS i, t.id, t.thread_id, t.sender_id, t.cmid, t.body
        FROM unnest(p_ids, p_threads, p_senders, p_client_msg_ids, p_bodies)
             WITH ORDINALITY AS t(id, thread_id, sender_id, cmid, body, i)
    ), k AS (
        SELECT b.*,
               EXISTS (SELECT 1 FROM messages m WHERE m.sender_id = b.sender_id AND m.client_msg_id = b.cmid) AS stored,
               EXISTS (SELECT 1 FROM thread_members tm WHERE tm.thread_id = b.thread_id AND tm.user_id = b.sender_id) AS mem
        FROM b
    ), c AS (
        -- A repeat: stored before, or a member's second (sender_id, client_msg_id) in
        -- this batch (a non-member's copies are not_member, as each alone would be).
        SELECT k.*,
               k.stored OR (k.mem AND row_number() OVER (PARTITION BY k.sender_id, k.cmid, k.mem ORDER BY k.i) > 1) AS rep
        FROM k
    ), n AS (
        SELECT c.i, c.id, c.thread_id, c.sender_id, c.cmid, c.body,
               th.last_seq + row_number() OVER (PARTITION BY c.thread_id ORDER BY c.i) AS seq,
               row_number() OVER (PARTITION BY c.thread_id ORDER BY c.i) = 1 AS first
        FROM c JOIN threads th ON th.id = c.thread_id
        WHERE NOT c.rep AND c.mem
    ), ins AS (
        INSERT INTO messages (id, thread_id, seq, sender_id, client_msg_id, body, created_at)
        SELECT n.id, n.thread_id, n.seq, n.sender_id, n.cmid, n.body, p_now FROM n
        RETURNING messages.thread_id, messages.seq, messages.sender_id
    ), upd AS (
        UPDATE threads th
        SET last_seq = x.mx,
            last_activity_at = CASE WHEN th.last_activity_at < p_now THEN p_now ELSE th.last_activity_at END
        FROM (SELECT ins.thread_id, max(ins.seq) AS mx FROM ins GROUP BY ins.thread_id) x
        WHERE th.id = x.thread_id
        RETURNING th.id
    ), rd AS (
        UPDATE thread_members tm SET read_seq = x.mx
        FROM (SELECT ins.thread_id, ins.sender_id, max(ins.seq) AS mx FROM ins GROUP BY ins.thread_id, ins.sender_id) x
        WHERE tm.thread_id = x.thread_id AND tm.user_id = x.sender_id AND tm.read_seq < x.mx
        RETURNING tm.user_id
    ), ms AS (
        SELECT tm.thread_id, string_agg(tm.user_id::text, ',') AS list
        FROM thread_members tm
        WHERE tm.thread_id IN (SELECT n.thread_id FROM n WHERE n.first)
        GROUP BY tm.thread_id
    )
    SELECT c.i,
           coalesce(n.seq, 0)::bigint,
           CASE WHEN n.first THEN ms.list END,
           CASE WHEN c.rep THEN 'repeat' WHEN NOT c.mem THEN 'not_member' ELSE 'created' END
    FROM c
    LEFT JOIN n ON n.i = c.i
    LEFT JOIN ms ON ms.thread_id = n.thread_id
    ORDER BY c.i;
END
$$;
