"""A small talking bot for `make demo`: joins a room, says something every
20 seconds and answers messages that mention it, and answers every 1:1
chat message.

Usage: demobot.py JID PASSWORD HOST PORT CAFILE ROOM NICK

Run it with /usr/bin/python3 (Debian's python3-slixmpp). It prints
"JOINED <room>" once it is in the room, and exits with status 1 when it
cannot connect, log in or join.
"""

import asyncio
import itertools
import sys

import slixmpp

LINES = [
    "Hello from bob! Mention my name and I will answer.",
    "The bouncer keeps this room's history while your client is offline.",
    "Disconnect your client, wait for my next line, reconnect: it is replayed.",
    "Try searching the room archive (MAM) from your client.",
    "Connect a second client as alice: both see the same room.",
]


class Bot(slixmpp.ClientXMPP):
    def __init__(self, jid, password, room, nick, interval):
        super().__init__(jid, password)
        self.room, self.nick, self.interval = room, nick, interval
        self.register_plugin("xep_0045")
        self.register_plugin("xep_0203")
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("groupchat_message", self.message)
        self.add_event_handler("message", self.chat)
        self.add_event_handler("failed_all_auth", lambda e: self.fail("login failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail("cannot connect: %s" % e))
        self.add_event_handler("disconnected", lambda e: self.fail("disconnected: %s" % e))

    def fail(self, why):
        print("demobot: %s" % why, file=sys.stderr, flush=True)
        self.loop.stop()
        sys.exit(1)

    async def start(self, event):
        self.send_presence()
        try:
            await self.plugin["xep_0045"].join_muc_wait(self.room, self.nick, maxstanzas=0, timeout=20)
        except Exception as e:  # PresenceError or TimeoutError: nothing to retry
            self.fail("cannot join %s: %r" % (self.room, e))
            return
        print("JOINED %s" % self.room, flush=True)
        for n in itertools.count(1):
            line = LINES[(n - 1) % len(LINES)]
            self.send_message(mto=self.room, mbody="%s (#%d)" % (line, n), mtype="groupchat")
            await asyncio.sleep(self.interval)

    def message(self, msg):
        # Replayed history (XEP-0045 §7.2.15 marks it with XEP-0203 delay)
        # and our own echo are not questions to answer.
        if msg["mucnick"] == self.nick or msg["delay"]["stamp"] is not None:
            return
        body = msg["body"]
        if self.nick.lower() in body.lower():
            self.send_message(
                mto=self.room,
                mbody="%s: you said \u201c%s\u201d. I heard you!" % (msg["mucnick"], body),
                mtype="groupchat",
            )


    def chat(self, msg):
        # 1:1 chats (the banner suggests chatting with bob). Errors and
        # bodiless stanzas (chat states, receipts) get no answer, so two
        # bots can never loop.
        if msg["type"] not in ("chat", "normal") or not msg["body"] or msg["delay"]["stamp"] is not None:
            return
        msg.reply("bob here: you said \u201c%s\u201d. Now disconnect, let me talk in %s, "
                  "and reconnect: you miss nothing." % (msg["body"], self.room)).send()


def main():
    if len(sys.argv) != 8:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    jid, password, host, port, cafile, room, nick = sys.argv[1:]
    bot = Bot(jid, password, room, nick, interval=20)
    bot.ssl_context.load_verify_locations(cafile)
    bot.connect(address=(host, int(port)))
    bot.loop.run_forever()


if __name__ == "__main__":
    main()
