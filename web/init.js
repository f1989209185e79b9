// Starts Converse.js for this bouncer. The bouncer tells the page the
// account's JID (xmppbouncer.json); the WebSocket is the bouncer's own,
// next to this page (or web.websocket_url when a reverse proxy moves it).
(async function () {
    'use strict';
    let cfg = {};
    try {
        const r = await fetch('xmppbouncer.json', { cache: 'no-store' });
        if (r.ok) cfg = await r.json();
    } catch (e) {
        console.warn('xmppbouncer: no xmppbouncer.json', e);
    }
    const here = new URL('.', location.href);
    let ws = cfg.websocket_url;
    if (!ws) {
        const u = new URL(cfg.websocket_path || 'xmpp-websocket', here);
        u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
        ws = u.href;
    }
    converse.initialize({
        assets_path: new URL('converse/', here).pathname,
        websocket_url: ws,
        discover_connection_methods: false,
        jid: cfg.jid,
        authentication: 'login',
        allow_registration: false,
        auto_reconnect: true,
        view_mode: 'fullscreen',
        // History comes from the bouncer's archive (MAM) and rooms from
        // the account's bookmarks.
        message_archiving: 'always',
        allow_bookmarks: true,
        muc_respect_autojoin: true,
        // The bouncer is in the rooms already; join with the same nick
        // (the account's name) without asking.
        muc_nickname_from_jid: true,
        // A borrowed computer keeps nothing once you log out.
        clear_cache_on_logout: true,
        play_sounds: false,
        show_send_button: true,
    });
})();
