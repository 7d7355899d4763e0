-- 0004_store_messages_members_once: a batch reads and returns a thread's members once.
--
-- Under load one busy thread's senders are stored in batches of dozens of messages;
-- 0003 read the thread's member list (array_agg over thread_members) for every one of
-- them and sent it back with every row, 100 ids each for a 100-member thread. The
-- threads are locked at the start of the batch and membership changes take the same
-- lock, so the list cannot change within it: it is read and sent with the thread's
-- first created row only; the caller reuses it for the thread's later rows, where
-- members is NULL.
CREATE OR REPLACE FUNCTION store_messages(
    p_ids uuid[], p_threads uuid[], p_senders uuid[], p_client_msg_ids text[], p_bodies text[], p_now timestamptz
) RETURNS TABLE (idx int, seq bigint, members text, status text)
LANGUAGE plpgsql AS $$
DECLARE
    i         int;
    v_seq     bigint;
    v_sent    uuid[] := '{}'; -- threads whose members a row has carried
BEGIN
    PERFORM 1 FROM threads WHERE id = ANY (p_threads) ORDER BY id FOR UPDATE;
    PERFORM 1 FROM thread_members tm
        JOIN unnest(p_threads, p_senders) AS x(thread_id, user_id)
          ON tm.thread_id = x.thread_id AND tm.user_id = x.user_id
        ORDER BY tm.thread_id, tm.user_id
        FOR UPDATE OF tm;
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
        UPDATE thread_members SET read_seq = v_seq
        WHERE thread_id = p_threads[i] AND user_id = p_senders[i] AND read_seq < v_seq;
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
