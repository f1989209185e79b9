-- Per-room message counts, kept by triggers, so that the RSM <count/> of an
-- unfiltered MAM query (XEP-0059 §2.6; XEP-0313 §4.2.2) is a lookup instead
-- of a scan of the whole room.
ALTER TABLE rooms ADD COLUMN msg_count INTEGER NOT NULL DEFAULT 0;

UPDATE rooms SET msg_count = (SELECT count(*) FROM messages m WHERE m.room_id = rooms.id);

CREATE TRIGGER messages_count_ai AFTER INSERT ON messages BEGIN
    UPDATE rooms SET msg_count = msg_count + 1 WHERE id = new.room_id;
END;

CREATE TRIGGER messages_count_ad AFTER DELETE ON messages BEGIN
    UPDATE rooms SET msg_count = msg_count - 1 WHERE id = old.room_id;
END;
