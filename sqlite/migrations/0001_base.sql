-- Base schema of the room archive and state store.

CREATE TABLE rooms (
    id  INTEGER PRIMARY KEY,
    jid TEXT NOT NULL UNIQUE
);

-- seq is AUTOINCREMENT so that a pruned row's seq (and so its "xb-<seq>"
-- archive id) is never handed out again (XEP-0313 §6.3: archive ids MUST
-- NOT be reused).
CREATE TABLE messages (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id   INTEGER NOT NULL REFERENCES rooms(id),
    stamp     INTEGER NOT NULL,          -- unix microseconds, UTC
    stanza_id TEXT,                      -- XEP-0359 stanza-id by the room; NULL if none
    fkey      BLOB,                      -- fallback dedup hash; only when stanza_id IS NULL
    origin_id TEXT NOT NULL DEFAULT '',
    msg_id    TEXT NOT NULL DEFAULT '',
    nick      TEXT NOT NULL DEFAULT '',
    real_jid  TEXT NOT NULL DEFAULT '',
    body      TEXT,                      -- NULL for stanzas without <body/>
    xml       TEXT NOT NULL
);

-- Archive order is (stamp, seq); seq is the rowid and so is implicitly the
-- last column of every index, which makes this index serve ORDER BY
-- stamp, seq within a room in both directions.
CREATE INDEX messages_room_stamp ON messages(room_id, stamp);

-- Dedup by the room-assigned stanza-id (XEP-0359 §3: unique and stable
-- within the room), and lookup of client-supplied archive ids.
CREATE UNIQUE INDEX messages_room_stanza_id ON messages(room_id, stanza_id)
    WHERE stanza_id IS NOT NULL;

CREATE INDEX messages_room_fkey ON messages(room_id, fkey, stamp)
    WHERE fkey IS NOT NULL;

CREATE TABLE state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
