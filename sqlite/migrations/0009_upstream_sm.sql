-- XEP-0198 on the upstream session: the resumable session's id, the full
-- JID it is bound to, and h, how many stanzas from the server the bouncer
-- has durably handled (committed). A restart resumes with this h, so the
-- server resends everything after it. At most one row.
CREATE TABLE upstream_sm (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    id      TEXT NOT NULL,
    bound   TEXT NOT NULL,
    h       INTEGER NOT NULL,
    updated INTEGER NOT NULL  -- unix seconds
);

-- The durable chat queue: every 1:1 message worth keeping (the offline
-- store's rules) is committed here before it is forwarded. sid is the
-- server's stanza-id (XEP-0359, by = the account), unique, so a message the
-- server resends after a resume is recognised. rcpt lists the local
-- resources it was for (one per line): after a crash each gets what it had
-- not acknowledged (its chat cursor, in the cursors table) once.
CREATE TABLE chats (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    sid   TEXT,
    stamp INTEGER NOT NULL,  -- unix microseconds, UTC
    rcpt  TEXT NOT NULL,
    xml   TEXT NOT NULL
);
CREATE UNIQUE INDEX chats_sid ON chats(sid) WHERE sid IS NOT NULL;

-- Local clients' resumable XEP-0198 sessions, so a <resume/> works after a
-- restart: the id, the resource, in_h (stanzas handled from the client),
-- when it expires, and what the core needs to rebuild it: the client's
-- presence and the rooms it was in (one "room nick" per line). What the
-- client had not acknowledged is rebuilt from its cursors (rooms and the
-- chat queue).
CREATE TABLE resumable (
    id       TEXT PRIMARY KEY,
    resource TEXT NOT NULL,
    in_h     INTEGER NOT NULL,
    expires  INTEGER NOT NULL,  -- unix seconds
    presence TEXT NOT NULL DEFAULT '',
    rooms    TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
