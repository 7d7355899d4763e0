-- 0010_store_leaves_read_marks: storing a message no longer moves its sender's read mark.
--
-- The contract (api/PROTOCOL.md, section 2) defines a thread's unread count as the
-- messages after your read mark that others sent, and the read mark as what POST
-- /threads/{id}/read sets. Every store also moved the sender's read mark to their own
-- message, which counted as read the messages others had sent before it: bob sends 1,
-- carol sends 2, and carol's unread was 0 where the contract says 1. The count now
-- leaves one's own messages out itself (ThreadsForUser in pkg/postgres), so the stores
-- write one row fewer per message: the thread's seq and the message, not the sender's
-- membership (on earlier boots, about 25 µs of PostgreSQL's CPU a call of
-- store_message).
--
-- With the read mark gone, the batch functions no longer lock the senders'
-- memberships either. The lock was there for the read mark's update, in the order
-- ack flushes lock the same rows (0006, 0009); nothing else needs it. The thread row's
-- lock still serialises the senders of a thread, so seq has no gaps and the
-- membership check, the members list and the repeat check are read after any wait
-- for it. A removal of the sender that commits after that check is concurrent with
-- the send either way, as it always was for store_message, which never took that
-- lock. An ack flush now never waits for a send, nor a send for a flush.
--
-- The functions are those of 0002 (store_message), 0008 (store_messages) and 0007
-- (store_messages_bulk) without the read mark and the membership locks; nothing else
-- changes.
CREATE OR REPLACE FUNCTION store_message(
    p_id uuid, p_thread uuid, p_sender uuid, p_client_msg_id text, p_body text, p_now timestamptz
) RETURNS TABLE (seq bigint, members text)
LANGUAGE plpgsql AS $$
DECLARE
    v_seq     bigint;
    v_members uuid[];
BEGIN
    -- The thread row's lock serialises the senders of one thread: seq has no gaps.
    UPDATE threads
    SET last_seq = last_seq + 1,
        last_activity_at = CASE WHEN last_activity_at < p_now THEN p_now ELSE last_activity_at END
    WHERE id = p_thread
      AND EXISTS (SELECT 1 FROM thread_members WHERE thread_id = p_thread AND user_id = p_sender)
    RETURNING last_seq INTO v_seq;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not a member' USING ERRCODE = 'SB001';
    END IF;
    SELECT array_agg(tm.user_id) INTO v_members FROM thread_members tm WHERE tm.thread_id = p_thread;
    IF NOT (p_sender = ANY (v_members)) THEN
        -- Removed while we waited for the lock.
        RAISE EXCEPTION 'not a member' USING ERRCODE = 'SB001';
    END IF;
    INSERT INTO messages (id, thread_id, seq, sender_id, client_msg_id, body, created_at)
    VALUES (p_id, p_thread, v_seq, p_sender, p_client_msg_id, p_body, p_now);
    RETURN QUERY SELECT v_seq, array_to_string(v_members, ',');
END
$$;

CREATE OR REPLACE FUNCTION store_messages(
    p_ids uuid[], p_threads uuid[], p_senders uuid[], p_client_msg_ids text[], p_bodies text[], p_now timestamptz
) RETURNS TABLE (idx int, seq bigint, members text, status text)
LANGUAGE plpgsql AS $$
DECLARE
    i         int;
    v_seq     bigint;
    v_t       uuid;
    v_sent    uuid[] := '{}'; -- threads whose members a row has carried
BEGIN
    -- Threads in id order, as every other batch takes them, so batches cannot deadlock.
    FOR v_t IN SELECT DISTINCT x FROM unnest(p_threads) AS x ORDER BY 1 LOOP
        PERFORM 1 FROM threads WHERE id = v_t FOR UPDATE;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        IF EXISTS (SELECT 1 FROM messages m
                   WHERE m.sender_id = p_senders[i] AND m.client_msg_id = p_client_msg_ids[i]) THEN
            idx := i; seq := 0; members := NULL; status := 'repeat';
            RETURN NEXT;
            CONTINUE;
        END IF;
        UPDATE threads
        SET last_seq = last_seq + 1,
            last_activity_at = CASE WHEN last_activity_at < p_now THEN p_now ELSE last_activity_at END
        WHERE id = p_threads[i]
          AND EXISTS (SELECT 1 FROM thread_members WHERE thread_id = p_threads[i] AND user_id = p_senders[i])
        RETURNING last_seq INTO v_seq;
        IF NOT FOUND THEN
            idx := i; seq := 0; members := NULL; status := 'not_member';
            RETURN NEXT;
            CONTINUE;
        END IF;
        INSERT INTO messages (id, thread_id, seq, sender_id, client_msg_id, body, created_at)
        VALUES (p_ids[i], p_threads[i], v_seq, p_senders[i], p_client_msg_ids[i], p_bodies[i], p_now);
        idx := i; seq := v_seq; status := 'created';
        IF p_threads[i] = ANY (v_sent) THEN
            members := NULL; -- sent with the thread's first row of this batch
        ELSE
            SELECT string_agg(tm.user_id::text, ',') INTO members
            FROM thread_members tm WHERE tm.thread_id = p_threads[i];
            v_sent := v_sent || p_threads[i];
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION store_messages_bulk(
    p_ids uuid[], p_threads uuid[], p_senders uuid[], p_client_msg_ids text[], p_bodies text[], p_now timestamptz
) RETURNS TABLE (idx int, seq bigint, members text, status text)
LANGUAGE plpgsql AS $$
DECLARE
    i        int;
    v_stored boolean[] := '{}';
BEGIN
    PERFORM 1 FROM threads WHERE id = ANY (p_threads) ORDER BY id FOR UPDATE;
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
