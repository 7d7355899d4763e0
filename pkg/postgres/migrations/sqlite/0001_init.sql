-- 0001_init: users, threads, their members and messages. The same schema as
-- migrations/postgres/0001_init.sql in SQLite's types: ids are TEXT, times are
-- TIMESTAMP (the driver reads that declared type back as time.Time; the store writes
-- them in UTC, so their text sorts in time order).
--
-- Every index names the queries it serves (by the store method in pkg/postgres that
-- makes them). An index no query uses is only a cost on every write.

CREATE TABLE users (
    -- PK: UserByID; the users joined for thread members; the foreign keys below.
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    -- UserCredentials and UsersByUsername look users up by name; it also makes
    -- CreateUser answer username_taken.
    CONSTRAINT users_username_key UNIQUE (username)
);

CREATE TABLE threads (
    -- PK: every thread lookup and CreateMessage's UPDATE of last_seq.
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    -- No index: no query filters by creator, and users are never deleted.
    created_by       TEXT NOT NULL REFERENCES users (id),
    last_seq         INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_at       TIMESTAMP NOT NULL,
    last_activity_at TIMESTAMP NOT NULL
);

CREATE TABLE thread_members (
    thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    acked_seq INTEGER NOT NULL DEFAULT 0 CHECK (acked_seq >= 0),
    read_seq  INTEGER NOT NULL DEFAULT 0 CHECK (read_seq >= 0),
    joined_at TIMESTAMP NOT NULL,
    -- PK: the members of a thread (MemberIDs, CreateMessage, AddMember's count, the
    -- member lists of ThreadsForUser / ThreadForMember, SharedWith's other side) and
    -- one membership (Membership, MarkRead, Ack, RemoveMember, CreateMessage's sender
    -- check and read mark).
    PRIMARY KEY (thread_id, user_id)
) WITHOUT ROWID;

-- The threads of one user: ThreadsForUser, ThreadForMember's viewer row, Memberships,
-- SharedWith.
CREATE INDEX thread_members_user_id_idx ON thread_members (user_id, thread_id);

CREATE TABLE messages (
    -- PK: the message's identity, which clients dedupe deliveries by.
    id            TEXT PRIMARY KEY,
    thread_id     TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL CHECK (seq > 0),
    -- No cascade: deleting a user must not punch gaps into other members' history.
    sender_id     TEXT NOT NULL REFERENCES users (id),
    client_msg_id TEXT NOT NULL,
    body          TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    -- MessagesAfter and MessagesBefore (one thread, a seq range, ORDER BY seq).
    CONSTRAINT messages_thread_seq_key UNIQUE (thread_id, seq),
    -- CreateMessage's idempotency: the ON CONFLICT target of its INSERT and the lookup
    -- of the first message when a client repeats a client_msg_id.
    CONSTRAINT messages_sender_client_msg_key UNIQUE (sender_id, client_msg_id)
);
