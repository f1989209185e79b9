-- XEP-0357 push registrations, one per local client resource: the app
-- server (XMPP Push Service) JID, its node, and the client's publish-options
-- data form (it carries the app server's secret) serialised as XML.
CREATE TABLE push_registrations (
    resource TEXT PRIMARY KEY,
    service  TEXT NOT NULL,
    node     TEXT NOT NULL,
    form     TEXT NOT NULL DEFAULT '',
    created  INTEGER NOT NULL           -- unix seconds
) WITHOUT ROWID;
