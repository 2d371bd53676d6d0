-- Floodgate schema, version 1.
--
-- Portable on purpose: the PostgreSQL engine uses the same tables and
-- columns (TEXT ids, BIGINT seqs, Unix-millisecond BIGINT times, a boolean
-- for disabled, a byte/JSON body). What is SQLite-only is physical:
-- WITHOUT ROWID clusters a table on its primary key, which PostgreSQL
-- gets from its own index layout.
--
-- Every table is keyed by app_id first: tenant isolation is in the keys,
-- and every lookup the store makes is a prefix of one of them.

CREATE TABLE apps (
    id                TEXT    NOT NULL PRIMARY KEY,
    name              TEXT    NOT NULL,
    secret            TEXT    NOT NULL,
    disabled          INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    prev_secret       TEXT    NOT NULL DEFAULT '',
    prev_secret_until INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE conversations (
    app_id     TEXT    NOT NULL REFERENCES apps (id),
    id         TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('direct', 'group', 'room')),
    name       TEXT    NOT NULL DEFAULT '',
    creator    TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    -- last_seq is the seq counter: an append increments it in the same
    -- transaction that inserts the message, which is what makes seqs
    -- gap-free.
    last_seq   INTEGER NOT NULL DEFAULT 0,
    last_at    INTEGER NOT NULL,
    PRIMARY KEY (app_id, id)
) WITHOUT ROWID;

CREATE TABLE members (
    app_id     TEXT    NOT NULL,
    conv_id    TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    joined_seq INTEGER NOT NULL,
    read_seq   INTEGER NOT NULL,
    PRIMARY KEY (app_id, conv_id, user_id),
    FOREIGN KEY (app_id, conv_id) REFERENCES conversations (app_id, id)
) WITHOUT ROWID;

-- A user's conversations, for listings and sync.
CREATE INDEX members_by_user ON members (app_id, user_id);

CREATE TABLE messages (
    app_id        TEXT    NOT NULL,
    conv_id       TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    sender        TEXT    NOT NULL DEFAULT '',
    client_msg_id TEXT    NOT NULL DEFAULT '',
    body          BLOB    NOT NULL,
    PRIMARY KEY (app_id, conv_id, seq),
    FOREIGN KEY (app_id, conv_id) REFERENCES conversations (app_id, id)
) WITHOUT ROWID;

-- Idempotent sends: one message per client id and sender in a
-- conversation. Partial, so messages without a client id cost nothing here.
CREATE UNIQUE INDEX messages_dedupe
    ON messages (app_id, conv_id, sender, client_msg_id)
    WHERE client_msg_id <> '';

CREATE TABLE revocations (
    app_id         TEXT    NOT NULL REFERENCES apps (id),
    user_id        TEXT    NOT NULL,
    revoked_before INTEGER NOT NULL,
    PRIMARY KEY (app_id, user_id)
) WITHOUT ROWID;
