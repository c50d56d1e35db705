// Runs in the browser page (served by run.mjs as /client.js, after Converse's own
// dist/converse.min.js). run.mjs puts the settings in `window.__XMPPD_CONVERSE` before the page
// loads (Playwright's addInitScript), so the password never appears in a URL.
// Loaded as a module after dist/converse.min.js (itself an ES module), which sets `window.converse`.
//
// A small plugin hands Converse's private API (`_converse.api`, which `api.chats.open`,
// `api.rooms.open` etc. live on) to the test as `window.__xmppd`, with what happened to the
// connection: the test waits on `window.__xmppd.connected`.
(function () {
    'use strict';
    const cfg = window.__XMPPD_CONVERSE;
    if (!cfg) {
        throw new Error('client.js: window.__XMPPD_CONVERSE is not set');
    }
    const state = { connected: false, events: [], api: null, _converse: null };
    window.__xmppd = state;
    const note = (what) => {
        state.events.push(what);
        console.info(`[xmppd-test] ${what}`);
    };

    converse.plugins.add('xmppd-test-hook', {
        initialize() {
            const { _converse } = this;
            const { api } = _converse;
            state.api = api;
            state._converse = _converse;
            api.listen.on('connected', () => {
                const conn = api.connection.get();
                state.mechanism = conn?._sasl_mechanism?.mechname ?? null;
                state.jid = conn?.jid ?? null;
                state.connected = true;
                note(`connected as ${state.jid} with ${state.mechanism}`);
            });
            api.listen.on('reconnected', () => note('reconnected'));
            api.listen.on('disconnected', () => {
                state.connected = false;
                // auto_reconnect is off: a disconnection is final, the test need not wait.
                const feedback = _converse.state.connfeedback;
                state.disconnected = `${feedback?.get('message') || 'no message'}`;
                note(`disconnected (${state.disconnected})`);
            });
            api.listen.on('connectionInitialized', () => note('connection initialized'));
        },
    });

    converse.initialize({
        whitelisted_plugins: ['xmppd-test-hook'],
        // One transport: WebSocket (RFC 7395) or BOSH (XEP-0124/0206).
        ...(cfg.bosh_service_url
            ? { bosh_service_url: cfg.bosh_service_url }
            : { websocket_url: cfg.websocket_url }),
        // XEP-0156 discovery would fetch host-meta from the JID's domain on this page's own
        // origin (not the server's HTTP port): the URL is given instead.
        discover_connection_methods: false,
        jid: cfg.jid,
        password: cfg.password,
        auto_login: true,
        // A test must not log in again by itself after a failure, hiding it.
        auto_reconnect: false,
        view_mode: 'fullscreen',
        loglevel: cfg.loglevel || 'info',
        i18n: 'en',
        // Nothing beyond the page's own origin and the XMPP server.
        show_connection_url_input: false,
        play_sounds: false,
        show_desktop_notifications: false,
        muc_show_logs_before_join: false,
        disable_effects: true,
    });
})();
