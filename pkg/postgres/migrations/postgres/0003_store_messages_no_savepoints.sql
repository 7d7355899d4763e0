-- 0003_store_messages_no_savepoints: store_messages without a sub-transaction per
-- message.
--
-- 0002 ran each message of a batch in its own BEGIN ... EXCEPTION block so that a
-- repeat of (sender_id, client_msg_id) undid only its own seq. Every such block is a
-- sub-transaction (a savepoint, its own xid once it writes), and at high send rates
-- they were a large share of PostgreSQL's CPU per message. Now a repeat is found
-- before its seq is taken: the batch's own earlier inserts are visible to that check,
-- and a repeat committed by another host after the check makes the plain INSERT fail
-- with unique_violation, which rolls the whole batch back; the committer then stores
-- each message on its own (store_message), which sorts the repeat out. So no seq is
-- ever used up for nothing, as before.
CREATE OR REPLACE FUNCTION store_messages(
    p_ids uuid[], p_threads uuid[], p_senders uuid[], p_client_msg_ids text[], p_bodies text[], p_now timestamptz
) RETURNS TABLE (idx int, seq bigint, members text, status text)
LANGUAGE plpgsql AS $$
DECLARE
    i         int;
    v_seq     bigint;
    v_members uuid[];
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
        SELECT array_agg(tm.user_id) INTO v_members FROM thread_members tm WHERE tm.thread_id = p_threads[i];
        INSERT INTO messages (id, thread_id, seq, sender_id, client_msg_id, body, created_at)
        VALUES (p_ids[i], p_threads[i], v_seq, p_senders[i], p_client_msg_ids[i], p_bodies[i], p_now);
        UPDATE thread_members SET read_seq = v_seq
        WHERE thread_id = p_threads[i] AND user_id = p_senders[i] AND read_seq < v_seq;
        idx := i; seq := v_seq; members := array_to_string(v_members, ','); status := 'created';
        RETURN NEXT;
    END LOOP;
END
$$;
