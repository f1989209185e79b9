-- XEP-0313 §4.1.1 'with' filtering for MUC archives matches the publisher
-- (occupant nick or, in non-anonymous rooms, real bare JID). Without these
-- a 'with' query scans the whole room.
CREATE INDEX messages_room_nick ON messages(room_id, nick, stamp);
CREATE INDEX messages_room_real_jid ON messages(room_id, real_jid, stamp)
    WHERE real_jid <> '';
