"""The demo's pysaml2 SP (:mod:`broker.demo.sp`) served over plain HTTP on loopback, mounted at /demo-sp
(and, when given, other apps of the demo at their own paths: Kommun C's IdP at /demo-idp).

``broker demo`` mounts the same app at /demo-sp of its own HTTPS server; behind nginx, the proxy passes
/demo-sp/ to this server and everything else to ``broker serve``, so that the browser sees the SP and the
broker at one HTTPS origin, as in the demo. It serves from a background thread as soon as it is started;
:meth:`DemoSpServer.stop` shuts it down and joins the thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import BaseWSGIServer, make_server

from broker.demo.sp import DemoSp, demo_sp_app
from tests.factories.lifecycle import Service

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class DemoSpServer(Service):
    def __init__(self, sp: DemoSp, mounts: Mapping[str, WSGIApplication] | None = None) -> None:
        self.sp = sp
        self.mounts = dict(mounts or {})
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_port)

    def start(self) -> None:
        app = DispatcherMiddleware(NotFound(), {"/demo-sp": demo_sp_app(self.sp), **self.mounts})
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="demo-sp", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

