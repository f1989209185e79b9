-- Offline storage (XEP-0160): messages to the account that arrived while no
-- local client was available. Rows are deleted once delivered to a client.
CREATE TABLE offline (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    stamp INTEGER NOT NULL,              -- unix microseconds, UTC
    xml   TEXT NOT NULL
);

-- Per-client catch-up cursors: for each room and local resource, the seq of
-- the newest archived message known to have reached that client.
CREATE TABLE cursors (
    room     TEXT NOT NULL,
    resource TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (room, resource)
) WITHOUT ROWID;
