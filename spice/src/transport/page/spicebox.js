// The browser client served on the SPICE port itself: Debian's spice-html5 talking
// to the same host and port over a WebSocket (wss:// when this page came over TLS).
// The password comes in the address's fragment (#password=...), which browsers never
// send to a server, and is removed from the address bar at once.
import * as SpiceHtml5 from './spice-html5/main.js';

const status = document.getElementById('status');
const fragment = new URLSearchParams(window.location.hash.slice(1));
const password = fragment.get('password') || '';
if (window.location.hash) {
    history.replaceState(null, '', window.location.pathname);
}
const scheme = window.location.protocol === 'https:' ? 'wss://' : 'ws://';
let connection = null;

function connect(pw) {
    if (connection) {
        connection.stop();
    }
    status.textContent = 'connecting…';
    connection = new SpiceHtml5.SpiceMainConn({
        uri: scheme + window.location.host + '/',
        screen_id: 'spice-screen',
        message_id: 'message-div',
        password: pw,
        onerror: failed,
        onsuccess: () => { status.textContent = 'connected'; },
    });
    window.spiceConnection = connection;
}

function failed(e) {
    const why = (e && e.message) ? e.message : String(e);
    status.textContent = 'disconnected: ' + why;
    if (connection) {
        connection.stop();
        connection = null;
    }
    if (why === 'Permission denied.' || why === 'Bad password.') {
        const pw = window.prompt('SPICE password');
        if (pw !== null) {
            connect(pw);
        }
    }
}

connect(password);
