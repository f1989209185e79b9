-- Storage rules (XEP-0334, XEP-0313 §7): chat states, receipts, markers and
-- other bodiless messages are not history, and neither is anything marked
-- no-store or no-permanent-store. Earlier versions archived them; remove
-- them. Bodiless payloads that are history (retractions, reactions,
-- moderation, fastenings, encrypted messages, <store/>) stay.
DELETE FROM messages WHERE
    xml LIKE '%<no-store xmlns="urn:xmpp:hints"%'
    OR xml LIKE '%<no-permanent-store xmlns="urn:xmpp:hints"%'
    OR (body IS NULL
        AND xml NOT LIKE '%<store xmlns="urn:xmpp:hints"%'
        AND xml NOT LIKE '%xmlns="urn:xmpp:message-retract:%'
        AND xml NOT LIKE '%xmlns="urn:xmpp:reactions:0"%'
        AND xml NOT LIKE '%xmlns="urn:xmpp:message-moderate:%'
        AND xml NOT LIKE '%xmlns="urn:xmpp:fasten:0"%'
        AND xml NOT LIKE '%xmlns="urn:xmpp:eme:0"%'
        AND xml NOT LIKE '%xmlns="eu.siacs.conversations.axolotl"%'
        AND xml NOT LIKE '%xmlns="urn:xmpp:omemo:2"%'
        AND xml NOT LIKE '%xmlns="urn:xmpp:openpgp:0"%');
