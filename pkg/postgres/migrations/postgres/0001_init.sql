-- 0001_init: users, threads, their members and messages.
--
-- Every index names the queries it serves (by the store method in pkg/postgres that
-- makes them). An index no query uses is only a cost on every write.

CREATE TABLE users (
    -- PK: UserByID; the users joined for thread members (ThreadsForUser,
    -- ThreadForMember, CreateThread); the foreign keys below.
    id            uuid PRIMARY KEY,
    username      text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL,
    -- UserCredentials and UsersByUsername look users up by name; it also makes
    -- CreateUser answer username_taken.
    CONSTRAINT users_username_key UNIQUE (username)
);

CREATE TABLE threads (
    -- PK: every thread lookup, and CreateMessage's UPDATE of last_seq whose row lock
    -- serialises the senders of one thread (so seq has no gaps or duplicates).
    id               uuid PRIMARY KEY,
    name             text NOT NULL,
    -- No index: no query filters by creator, and users are never deleted.
    created_by       uuid NOT NULL REFERENCES users (id),
    last_seq         bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_at       timestamptz NOT NULL,
    last_activity_at timestamptz NOT NULL
)
-- last_seq and last_activity_at change with every message and are in no index: room on
-- the page lets those updates stay HOT (no index writes, less bloat).
WITH (fillfactor = 70);

CREATE TABLE thread_members (
    thread_id uuid NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    acked_seq bigint NOT NULL DEFAULT 0 CHECK (acked_seq >= 0),
    read_seq  bigint NOT NULL DEFAULT 0 CHECK (read_seq >= 0),
    joined_at timestamptz NOT NULL,
    -- PK: the members of a thread (MemberIDs, CreateMessage, AddMember's count, the
    -- member lists of ThreadsForUser / ThreadForMember, SharedWith's other side) and
    -- one membership (Membership, MarkRead, Ack, RemoveMember, CreateMessage's sender
    -- check and read mark).
    PRIMARY KEY (thread_id, user_id)
)
-- acked_seq and read_seq move with every ack and read: keep those updates HOT.
WITH (fillfactor = 80);

-- The threads of one user: ThreadsForUser, ThreadForMember's viewer row, Memberships,
-- SharedWith (thread_id included so SharedWith's join reads only the index); the
-- planner may also pick it for Ack's (thread_id, user_id) pairs.
CREATE INDEX thread_members_user_id_idx ON thread_members (user_id, thread_id);

CREATE TABLE messages (
    -- PK: the message's identity, which clients dedupe deliveries by.
    id            uuid PRIMARY KEY,
    thread_id     uuid NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    seq           bigint NOT NULL CHECK (seq > 0),
    -- No cascade: deleting a user must not punch gaps into other members' history.
    sender_id     uuid NOT NULL REFERENCES users (id),
    client_msg_id text NOT NULL,
    body          text NOT NULL,
    created_at    timestamptz NOT NULL,
    -- MessagesAfter and MessagesBefore (one thread, a seq range, ORDER BY seq);
    -- also refuses a duplicate seq should the last_seq lock ever be bypassed.
    CONSTRAINT messages_thread_seq_key UNIQUE (thread_id, seq),
    -- CreateMessage's idempotency: the ON CONFLICT target of its INSERT and the lookup
    -- of the first message when a client repeats a client_msg_id.
    CONSTRAINT messages_sender_client_msg_key UNIQUE (sender_id, client_msg_id)
);
