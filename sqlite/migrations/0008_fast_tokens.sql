-- XEP-0484 FAST tokens of local clients. Only the SHA-256 of a token is
-- kept (the listener keys HMAC with it, see listener/fast.go), tied to the
-- SASL2 user-agent id of the device it was issued to.
CREATE TABLE fast_tokens (
    hash       BLOB PRIMARY KEY,          -- SHA-256 of the token
    user_agent TEXT NOT NULL,             -- SASL2 <user-agent id/>
    software   TEXT NOT NULL DEFAULT '',
    device     TEXT NOT NULL DEFAULT '',
    mechanism  TEXT NOT NULL,             -- the HT mechanism it was issued for
    created    INTEGER NOT NULL,          -- unix seconds
    expires    INTEGER NOT NULL,          -- unix seconds
    last_used  INTEGER NOT NULL DEFAULT 0,-- unix seconds, 0: never
    count      INTEGER NOT NULL DEFAULT 0 -- highest XEP-0484 count seen
) WITHOUT ROWID;
CREATE INDEX fast_tokens_user_agent ON fast_tokens(user_agent);
