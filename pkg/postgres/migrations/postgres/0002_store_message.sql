-- 0002_store_message: the durable send in one round trip.
--
-- CreateMessage of a lone message (pkg/postgres createMessageOneTrip) calls this in
-- autocommit: one statement, one implicit transaction, one WAL flush, and a single
-- network round trip instead of BEGIN, four statements and COMMIT. Each statement of a
-- PL/pgSQL function takes a fresh snapshot in READ COMMITTED, so the members read after
-- the thread row's lock include a member whose AddMember committed while we waited.
--
-- Errors roll the whole call back, so no seq is ever used up for nothing:
--   SB001  the sender is not a member (or the thread does not exist)
--   23505  a repeat of (sender_id, client_msg_id): the caller reads the first message
CREATE FUNCTION store_message(
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
    -- The sender has read their own message; acked_seq waits for their devices.
    UPDATE thread_members SET read_seq = v_seq
    WHERE thread_id = p_thread AND user_id = p_sender AND read_seq < v_seq;
    RETURN QUERY SELECT v_seq, array_to_string(v_members, ',');
END
$$;

-- store_messages is store_message for a batch (group commit, pkg/postgres committer):
-- one round trip and one commit for every message that concurrent senders handed in.
-- It locks the batch's threads in id order and the senders' memberships in (thread,
-- user) order, the orders every other multi-row writer uses (Ack), so batches never
-- deadlock with each other or with acks. Each message runs in its own sub-block: a
-- repeat of (sender_id, client_msg_id) undoes only its own seq and is reported as
-- 'repeat'; a sender who is not a member is reported as 'not_member'.
CREATE FUNCTION store_messages(
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
        BEGIN
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
        EXCEPTION WHEN unique_violation THEN
            idx := i; seq := 0; members := NULL; status := 'repeat';
            RETURN NEXT;
        END;
    END LOOP;
END
$$;
