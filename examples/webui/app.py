"""The web UI of the example launcher: one page, served by bottle."""
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

import bottle

app = bottle.Bottle()


@app.route("/")
def index():
    return "<h1>Hello from PinokioCloud</h1><p>This page is served from the app's own venv.</p>"


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
server = make_server("127.0.0.1", port, app, handler_class=QuietHandler)
# the port is bound now: announce it (the launcher's `on` handler waits for this line)
print(f"Hello Web UI on http://127.0.0.1:{port}", flush=True)
server.serve_forever()
