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
