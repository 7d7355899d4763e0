-- 0007_store_messages_bulk_index_probe: store_messages_bulk looks each message's
-- (sender_id, client_msg_id) up in the index, never by scanning messages.
--
-- 0005 asked, for every row of the batch, EXISTS (SELECT 1 FROM messages WHERE
-- sender_id = ... AND client_msg_id = ...) inside its one big statement. For that
-- form PostgreSQL may build a hashed subplan: one sequential scan of all of messages
-- per call. It chose it whenever the table looked small at planning time, and with no
-- statistics (a fresh database; autovacuum off, as on the bench machine) it kept
-- choosing it far beyond small: a fresh three-host cluster at 2,500 msg/s made 4,175
-- such scans reading 27,000 rows each on average, PostgreSQL went from about half a
-- core to 1.3 cores, and the store stage's p99 climbed to seconds within 20 s. Each
-- probe is now its own small statement before the big one, whose plan is an index
-- lookup at any table size; the answers are unchanged.
CREATE OR REPLACE FUNCTION store_messages_bulk(
    p_ids uuid[], p_threads uuid[], p_senders uuid[], p_client_msg_ids text[], p_bodies text[], p_now timestamptz
) RETURNS TABLE (idx int, seq bigint, members text, status text)
LANGUAGE plpgsql AS $$
DECLARE
    i        int;
    v_stored boolean[] := '{}';
BEGIN
    PERFORM 1 FROM threads WHERE id = ANY (p_threads) ORDER BY id FOR UPDATE;
    PERFORM 1 FROM thread_members tm
        JOIN unnest(p_threads, p_senders) AS x(thread_id, user_id)
          ON tm.thread_id = x.thread_id AND tm.user_id = x.user_id
        ORDER BY tm.thread_id, tm.user_id
        FOR UPDATE OF tm;
    -- One index probe per message, each its own statement: as a single plan, the
    -- planner is free to hash a scan of all of messages instead (see the header).
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        v_stored := v_stored || EXISTS (SELECT 1 FROM messages m
                                        WHERE m.sender_id = p_senders[i] AND m.client_msg_id = p_client_msg_ids[i]);
    END LOOP;
    RETURN QUERY
    WITH b AS (
        SELECT t.i::int AS i, t.id, t.thread_id, t.sender_id, t.cmid, t.body, t.stored
        FROM unnest(p_ids, p_threads, p_senders, p_client_msg_ids, p_bodies, v_stored)
             WITH ORDINALITY AS t(id, thread_id, sender_id, cmid, body, stored, i)
    ), k AS (
        SELECT b.*,
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
