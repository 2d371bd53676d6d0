-- Floodgate schema, version 1: the same tables and columns as the SQLite
-- engine's 0001_init.sql (TEXT ids, BIGINT seqs, Unix-millisecond BIGINT
-- times), so data and reasoning carry over between the engines.
--
-- PostgreSQL-specific choices:
--   * Ids are COLLATE "C": every ordering the store promises (apps by id,
--     members by user, conversations by id, the listing's id tie-break) is
--     byte order, as in Go and SQLite, whatever the database's default
--     collation is; the group committer's lock order (conversations sorted
--     by app, id) is byte order too. "C" comparisons are also the cheapest.
--   * Bodies are BYTEA, not JSONB: JSONB would reorder keys, drop
--     duplicates and rewrite whitespace, and the store promises to return
--     the bytes it was given. It never queries inside a body, so JSONB's
--     parsing would be pure cost on the append path.
--   * disabled is a real BOOLEAN.
--
-- Every table is keyed by app_id first: tenant isolation is in the keys,
-- and every lookup the store makes is a prefix of one of them.

CREATE TABLE apps (
    id                TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name              TEXT    NOT NULL,
    secret            TEXT    NOT NULL,
    disabled          BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        BIGINT  NOT NULL,
    prev_secret       TEXT    NOT NULL DEFAULT '',
    prev_secret_until BIGINT  NOT NULL DEFAULT 0
);

CREATE TABLE conversations (
    app_id     TEXT COLLATE "C" NOT NULL REFERENCES apps (id),
    id         TEXT COLLATE "C" NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('direct', 'group', 'room')),
    name       TEXT   NOT NULL DEFAULT '',
    creator    TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    -- last_seq is the seq counter and the row is the conversation's append
    -- lock: a batch locks the row (SELECT … FOR UPDATE), assigns the next
    -- seqs and raises last_seq in the transaction that inserts the
    -- messages, which is what keeps seqs gap-free and unique across nodes.
    last_seq   BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_at    BIGINT NOT NULL,
    PRIMARY KEY (app_id, id)
);

CREATE TABLE members (
    app_id     TEXT COLLATE "C" NOT NULL,
    conv_id    TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    joined_seq BIGINT NOT NULL,
    read_seq   BIGINT NOT NULL,
    PRIMARY KEY (app_id, conv_id, user_id),
    FOREIGN KEY (app_id, conv_id) REFERENCES conversations (app_id, id)
);

-- A user's conversations, for listings and sync; conv_id last so a user's
-- conversations come out in id order.
CREATE INDEX members_by_user ON members (app_id, user_id, conv_id);

CREATE TABLE messages (
    app_id        TEXT COLLATE "C" NOT NULL,
    conv_id       TEXT COLLATE "C" NOT NULL,
    seq           BIGINT NOT NULL CHECK (seq > 0),
    at            BIGINT NOT NULL,
    sender        TEXT COLLATE "C" NOT NULL DEFAULT '',
    client_msg_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    body          BYTEA  NOT NULL,
    PRIMARY KEY (app_id, conv_id, seq),
    FOREIGN KEY (app_id, conv_id) REFERENCES conversations (app_id, id)
);

-- Idempotent sends: one message per client id and sender in a
-- conversation. Partial, so messages without a client id cost nothing here.
CREATE UNIQUE INDEX messages_dedupe
    ON messages (app_id, conv_id, sender, client_msg_id)
    WHERE client_msg_id <> '';

CREATE TABLE revocations (
    app_id         TEXT COLLATE "C" NOT NULL REFERENCES apps (id),
    user_id        TEXT COLLATE "C" NOT NULL,
    revoked_before BIGINT NOT NULL,
    PRIMARY KEY (app_id, user_id)
);
