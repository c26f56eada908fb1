"""PinokioCloud from a notebook: a client for the HTTP API of `pinokio serve` (docs/api.md), an
ipywidgets UI, and plain functions for notebooks without widgets.

Only the standard library is needed; ipywidgets is optional (for `UI`). Everything the engine
knows (apps, jobs, logs, URLs, tunnels) comes from the API: this module only shows it.

    import pinokio_nb as pk
    pk.connect("http://127.0.0.1:42000", home="/workspace/pinokio")
    pk.search("comfy"); pk.install("comfyui"); pk.start("comfyui"); pk.status(); pk.stop("comfyui")
    pk.UI()          # the widget UI (Discover, My Library, Terminal, Active Tunnels)
"""

import html
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

__all__ = [
    "ApiError", "Client", "SseEvent", "parse_sse", "connect", "client", "serve", "wait_healthy",
    "install", "start", "stop", "update", "uninstall", "logs", "status", "search", "follow",
    "on_colab", "colab_url", "UI",
]

API = "/api/v1"
DEFAULT_PORT = 42000
TOKEN_FILE = "http-token"


# ---------------------------------------------------------------------------------------------
# Server-Sent Events


class SseEvent:
    """One Server-Sent Event: `id`, `event` (default "message"), `data` (parsed JSON when it
    parses, else the raw text)."""

    __slots__ = ("id", "event", "data")

    def __init__(self, id, event, data):
        self.id = id
        self.event = event
        self.data = data

    def __repr__(self):
        return "SseEvent(id=%r, event=%r, data=%r)" % (self.id, self.event, self.data)


def parse_sse(lines):
    """Turn an iterable of text lines (with or without line endings) into `SseEvent`s, as the
    HTML event-stream rules say: `field: value` lines, comments start with `:`, a blank line
    ends an event, several `data:` lines join with newlines."""
    last_id = None
    event = None
    data = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    value = json.loads(text)
                except ValueError:
                    value = text
                yield SseEvent(last_id, event or "message", value)
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id" and "\0" not in value:
            last_id = value
    if data:  # a stream cut after the data lines: still report what arrived
        text = "\n".join(data)
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        yield SseEvent(last_id, event or "message", value)


class SseStream:
    """An open event stream; iterate for `SseEvent`s, `close()` from any thread to stop."""

    def __init__(self, conn, response):
        self._conn = conn
        self._response = response
        self._closed = False

    def _lines(self):
        while not self._closed:
            try:
                line = self._response.readline()
            except (OSError, ValueError, http.client.HTTPException):
                return
            if not line:
                return
            yield line.decode("utf-8", "replace")

    def __iter__(self):
        try:
            for ev in parse_sse(self._lines()):
                if self._closed:
                    return
                yield ev
        finally:
            self.close()

    def close(self):
        if self._closed:
            return
        self._closed = True
        sock = getattr(self._conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self._conn.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------
# The API client


class ApiError(Exception):
    """An error answer of the API: `kind` (docs/api.md, "Errors"), HTTP `status`, `message`."""

    def __init__(self, kind, status, message):
        super().__init__("%s (%s): %s" % (kind, status, message))
        self.kind = kind
        self.status = status
        self.message = message


def _q(part):
    return urllib.parse.quote(str(part), safe="")


class Client:
    """A client for the `pinokio serve` API. The token is read from `HOME/http-token` (when a
    home is known) and sent as `Authorization: Bearer`; without one, only a loopback server
    answers."""

    def __init__(self, url=None, home=None, token=None, timeout=30.0):
        url = url or os.environ.get("PINOKIO_URL") or "http://127.0.0.1:%d" % DEFAULT_PORT
        self.url = url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http(s) URL: %r" % url)
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.home = home or os.environ.get("PINOKIO_HOME")
        self._token = token
        self.timeout = timeout

    def __repr__(self):
        return "Client(%r, home=%r)" % (self.url, self.home)

    # -- plumbing

    def token(self):
        """The API token: given, else `HOME/http-token` (re-read until it exists)."""
        if self._token:
            return self._token
        if self.home:
            try:
                with open(os.path.join(self.home, TOKEN_FILE), encoding="utf-8") as f:
                    tok = f.read().strip()
            except OSError:
                return None
            if tok:
                self._token = tok
                return tok
        return None

    def _connection(self, timeout):
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _headers(self, extra=None):
        h = {"Accept": "application/json"}
        tok = self.token()
        if tok:
            h["Authorization"] = "Bearer " + tok
        if extra:
            h.update(extra)
        return h

    def _target(self, path, query):
        target = self._prefix + API + path
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            if q:
                target += "?" + urllib.parse.urlencode(q)
        return target

    def request(self, method, path, body=None, query=None, timeout=None):
        """One API call; `path` is relative to /api/v1. Returns the decoded JSON (None for an
        empty answer); raises `ApiError` for an error answer."""
        conn = self._connection(timeout or self.timeout)
        try:
            payload = None
            headers = self._headers()
            if body is not None or method in ("POST", "PUT", "DELETE"):
                payload = json.dumps(body if body is not None else {}).encode("utf-8")
                headers["Content-Type"] = "application/json"
            conn.request(method, self._target(path, query), body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        text = raw.decode("utf-8", "replace")
        value = None
        if text.strip():
            try:
                value = json.loads(text)
            except ValueError:
                value = text
        if resp.status >= 400:
            err = value.get("error") if isinstance(value, dict) else None
            if isinstance(err, dict):
                raise ApiError(err.get("kind", "error"), resp.status, err.get("message", ""))
            raise ApiError("http_%d" % resp.status, resp.status, text.strip()[:500])
        return value

    def stream(self, path, query=None, last_event_id=None, timeout=60.0):
        """Open a Server-Sent Event stream (the server pings every 15 s, so `timeout` only
        catches a dead connection)."""
        conn = self._connection(timeout)
        headers = self._headers({"Accept": "text/event-stream", "Cache-Control": "no-cache"})
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        try:
            conn.request("GET", self._target(path, query), headers=headers)
            resp = conn.getresponse()
        except Exception:
            conn.close()
            raise
        if resp.status >= 400:
            text = resp.read().decode("utf-8", "replace")
            conn.close()
            try:
                err = json.loads(text).get("error", {})
                raise ApiError(err.get("kind", "error"), resp.status, err.get("message", ""))
            except (ValueError, AttributeError):
                raise ApiError("http_%d" % resp.status, resp.status, text.strip()[:500])
        return SseStream(conn, resp)

    # -- health and system

    def health(self, timeout=5.0):
        return self.request("GET", "/health", timeout=timeout)

    def system(self):
        return self.request("GET", "/system")

    # -- catalog

    def catalog(self, q=None, category=None, tag=None, limit=None, offset=None):
        return self.request("GET", "/catalog", query={
            "q": q or None, "category": category or None, "tag": tag or None,
            "limit": limit, "offset": offset})

    def catalog_app(self, id):
        return self.request("GET", "/catalog/%s" % _q(id))

    # -- apps

    def apps(self):
        return self.request("GET", "/apps")["apps"]

    def app(self, id):
        return self.request("GET", "/apps/%s" % _q(id))

    def menu(self, id):
        return self.request("GET", "/apps/%s/menu" % _q(id))["menu"]

    def _action(self, id, action, body=None):
        return self.request("POST", "/apps/%s/%s" % (_q(id), action), body=body or {})["job"]

    def install(self, id, source=None, run=None):
        body = {}
        if source:
            body["source"] = source
        if run is not None:
            body["run"] = bool(run)
        return self._action(id, "install", body)

    def start(self, id, script=None, args=None, expose=None, via=None):
        body = {}
        if script:
            body["script"] = script
        if args:
            body["args"] = args
        if expose is not None:
            body["expose"] = bool(expose)
        if via:
            body["via"] = via
        return self._action(id, "start", body)

    def stop(self, id):
        return self._action(id, "stop")

    def update(self, id):
        return self._action(id, "update")

    def reset(self, id):
        return self._action(id, "reset")

    def uninstall(self, id):
        return self._action(id, "uninstall")

    # -- exposure

    def expose(self, id, via=None):
        return self.request("POST", "/apps/%s/expose" % _q(id),
                            body={"via": via} if via else {})["exposure"]

    def unexpose(self, id):
        return self.request("POST", "/apps/%s/unexpose" % _q(id), body={})["stopped"]

    def exposures(self):
        return self.request("GET", "/exposures")["exposures"]

    # -- jobs

    def runs(self, app=None):
        return self.request("GET", "/runs", query={"app": app})["runs"]

    def run(self, run_id):
        return self.request("GET", "/runs/%s" % _q(run_id))

    def run_events(self, run_id, after=None):
        """The job's events as a stream (replayed, then live, then `end`)."""
        return self.stream("/runs/%s/events" % _q(run_id),
                           query={"after": after} if after is not None else None)

    def run_events_json(self, run_id, after=None):
        """The job's events so far in one document: {"events", "next", "done"}."""
        q = {"format": "json"}
        if after is not None:
            q["after"] = after
        return self.request("GET", "/runs/%s/events" % _q(run_id), query=q)

    def follow_run(self, run_id, stop=None):
        """Yield every `SseEvent` of a job until its `end` event; reconnects after the last seen
        id when the connection drops. `stop`: a threading.Event that ends the loop early."""
        after = None
        failures = 0
        while not (stop and stop.is_set()):
            try:
                s = self.run_events(run_id, after=after)
            except (OSError, http.client.HTTPException):
                failures += 1
                if failures > 5:
                    raise
                time.sleep(0.5 * failures)
                continue
            for ev in s:
                if stop and stop.is_set():
                    s.close()
                    return
                if ev.id is not None:
                    after = ev.id
                yield ev
                if ev.event == "end":
                    s.close()
                    return
            failures += 1
            if failures > 5:
                return
            time.sleep(0.2)

    def wait_run(self, run_id, timeout=None):
        """Wait for a job to end (polling); return the job object."""
        deadline = None if timeout is None else time.time() + timeout
        while True:
            job = self.run(run_id)
            if job.get("state") != "running":
                return job
            if deadline is not None and time.time() > deadline:
                raise TimeoutError("job %s still running after %s s" % (run_id, timeout))
            time.sleep(0.3)

    # -- logs

    def logs(self, id, lines=None, script=None):
        return self.request("GET", "/apps/%s/logs" % _q(id),
                            query={"lines": lines, "script": script})["lines"]

    def log_stream(self, id, lines=None):
        return self.stream("/apps/%s/logs/stream" % _q(id), query={"lines": lines})

    # -- input forms

    def inputs(self):
        return self.request("GET", "/inputs")["inputs"]

    def answer_input(self, input_id, values):
        return self.request("POST", "/inputs/%s" % _q(input_id), body={"values": values})

    def cancel_input(self, input_id):
        return self.request("POST", "/inputs/%s/cancel" % _q(input_id), body={})

    # -- web UI

    def ui_url(self, with_token=True):
        """The web UI's URL (with `?token=` so a browser elsewhere logs in)."""
        tok = self.token() if with_token else None
        return self.url + "/" + ("?token=" + _q(tok) if tok else "")


# ---------------------------------------------------------------------------------------------
# Starting the server


def wait_healthy(c, timeout=60.0, proc=None):
    """Poll GET /api/v1/health until it answers ok (or `proc` exits, or time runs out)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("pinokio serve exited with status %s" % proc.returncode)
        try:
            h = c.health(timeout=2.0)
            if isinstance(h, dict) and h.get("ok"):
                return h
        except (OSError, http.client.HTTPException, ApiError) as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError("the engine did not answer %s/api/v1/health within %s s (%s)"
                       % (c.url, timeout, last))


def doctor(binary):
    """`pinokio doctor --json`, decoded (platform, layout, GPUs, tools)."""
    out = subprocess.run([binary, "doctor", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, check=True)
    return json.loads(out.stdout.decode("utf-8"))


def serve(binary, home=None, port=DEFAULT_PORT, host="127.0.0.1", timeout=60.0, log=None):
    """Start `pinokio serve` in the background (unless one already answers on the port) and wait
    for its health check. `home`: the Pinokio home (default: what `pinokio doctor` picks, the
    platform's persistent storage). Returns (client, process or None)."""
    if home is None:
        home = os.environ.get("PINOKIO_HOME") or doctor(binary)["layout"]["home"]
    home = os.path.abspath(os.path.expanduser(home))
    c = Client("http://%s:%d" % ("127.0.0.1" if host in ("0.0.0.0", "::") else host, port),
               home=home)
    try:
        c.health(timeout=1.0)
        return c, None  # already running (a re-run of the cell)
    except (OSError, http.client.HTTPException, ApiError):
        pass
    log = log or os.path.join(home, "logs", "serve.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    out = open(log, "ab")
    proc = subprocess.Popen(
        [binary, "--home", home, "serve", "--host", host, "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True)
    out.close()
    try:
        wait_healthy(c, timeout=timeout, proc=proc)
    except Exception:
        try:
            with open(log, "rb") as f:
                tail = f.read()[-2000:].decode("utf-8", "replace")
            sys.stderr.write(tail)
        except OSError:
            pass
        raise
    return c, proc


# ---------------------------------------------------------------------------------------------
# Colab


def on_colab():
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


_colab_urls = {}


def colab_url(port):
    """The kernel proxy URL of a local port on Colab (`google.colab.kernel.proxyPort`), or None
    elsewhere. Asks the browser, so call it from a cell or a button, not a background thread."""
    if port in _colab_urls:
        return _colab_urls[port]
    if not on_colab():
        return None
    try:
        from google.colab.output import eval_js
        url = eval_js("google.colab.kernel.proxyPort(%d)" % int(port), timeout_sec=10)
    except Exception:
        return None
    if url:
        _colab_urls[port] = url
    return url


def _port_of(url):
    try:
        return urllib.parse.urlsplit(url).port
    except ValueError:
        return None


def app_links(app, exposures=None):
    """[(label, url)] for an app: local URL, platform proxy URL, tunnel URLs, Colab proxy."""
    links = []
    if app.get("url"):
        links.append(("local", app["url"]))
        port = _port_of(app["url"])
        if port and port in _colab_urls:
            links.append(("colab", _colab_urls[port]))
    for e in (exposures if exposures is not None else app.get("exposures") or []):
        if e.get("app") not in (None, app.get("id")) or not e.get("public_url"):
            continue
        links.append((e.get("via") or "public", e["public_url"]))
    return links


# ---------------------------------------------------------------------------------------------
# Plain functions (no widgets)

_client = None


def connect(url=None, home=None, token=None):
    """Set the client the plain functions use (and return it)."""
    global _client
    _client = url if isinstance(url, Client) else Client(url, home=home, token=token)
    return _client


def client():
    global _client
    if _client is None:
        _client = Client()
    return _client


def _event_line(ev):
    """A short line for one job event (None: nothing worth printing)."""
    d = ev.data if isinstance(ev.data, dict) else {}
    t = ev.event
    if t == "output":
        return None  # printed raw
    if t == "run_start":
        return "> %s (%s steps)" % (d.get("uri") or d.get("path"), d.get("steps"))
    if t == "step_start":
        return "  step %s: %s" % (d.get("index"), d.get("method"))
    if t == "progress":
        total = d.get("total")
        pct = " %d%%" % (100 * d["bytes"] // total) if total and d.get("bytes") is not None else ""
        return "  %s %s%s%s" % (d.get("name"), _size(d.get("bytes")), pct,
                                " done" if d.get("done") else "")
    if t == "step_error":
        return "  ERROR in step %s (%s): %s" % (d.get("index"), d.get("method"), d.get("message"))
    if t == "warning":
        return "  warning: %s" % d.get("message")
    if t == "notify":
        return "  note: %s" % d.get("message")
    if t == "open_url":
        return "  open %s" % d.get("url")
    if t == "input_request":
        return "  waiting for input (answer it in the web UI or with Client.answer_input)"
    if t == "run_end":
        return "< %s%s" % (d.get("status"), ": " + d["error"] if d.get("error") else "")
    if t == "dropped":
        return "  ... %s events dropped" % d.get("count")
    if t == "end":
        return "job %s %s%s%s" % (d.get("id"), d.get("state"),
                                  ": " + d["error"] if d.get("error") else "",
                                  "  " + d["url"] if d.get("url") else "")
    return None


def _size(n):
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return "%d %s" % (n, unit) if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1024.0


def _clean(text):
    return text.replace("\r\n", "\n")


def follow(job, out=None, quiet=False, c=None):
    """Print a job's progress from its event stream until it ends; return the final job."""
    c = c or client()
    out = out or sys.stdout
    run_id = job["id"] if isinstance(job, dict) else job
    final = None
    last_progress = {}
    for ev in c.follow_run(run_id):
        if ev.event == "end":
            final = ev.data
        if quiet and ev.event != "end":
            continue
        if ev.event == "output" and isinstance(ev.data, dict):
            out.write(_clean(ev.data.get("text", "")))
            out.flush()
            continue
        if ev.event == "progress" and isinstance(ev.data, dict) and not ev.data.get("done"):
            now = time.time()  # at most one progress line a second per file
            if now - last_progress.get(ev.data.get("name"), 0) < 1.0:
                continue
            last_progress[ev.data.get("name")] = now
        line = _event_line(ev)
        if line:
            out.write(line + "\n")
            out.flush()
    if final is None:
        final = c.run(run_id)
    return final


def _act(action, app, quiet=False, **kw):
    c = client()
    job = getattr(c, action)(app, **kw)
    print("%s %s: job %s" % (action, app, job["id"]))
    final = follow(job, quiet=quiet, c=c)
    if final.get("state") == "succeeded" and action == "start":
        try:
            a = c.app(app)
        except ApiError:
            a = {}
        port = _port_of(a.get("url") or final.get("url") or "")
        if port and on_colab():
            colab_url(port)  # asks the browser now (a cell runs this), shown with the links
        for label, url in app_links(a) or ([("local", final["url"])] if final.get("url") else []):
            print("%s URL: %s" % (label, url))
    return final


def install(app, source=None, run=None, quiet=False):
    """Install an app (catalog id, or `source`: a git URL) and print the install's progress."""
    return _act("install", app, quiet=quiet, source=source, run=run)


def start(app, script=None, args=None, expose=None, via=None, quiet=False):
    """Start an app, print its progress and its URLs once the web UI is up."""
    return _act("start", app, quiet=quiet, script=script, args=args, expose=expose, via=via)


def stop(app, quiet=False):
    return _act("stop", app, quiet=quiet)


def update(app, quiet=False):
    return _act("update", app, quiet=quiet)


def uninstall(app, quiet=False):
    return _act("uninstall", app, quiet=quiet)


def logs(app, follow=False, lines=200):
    """Print an app's last log lines; `follow=True` keeps printing new lines (interrupt to
    stop)."""
    c = client()
    if not follow:
        got = c.logs(app, lines=lines)
        for entry in got:
            print(_clean(entry.get("text", "")).rstrip("\n"))
        return got
    s = c.log_stream(app, lines=lines)
    try:
        for ev in s:
            if ev.event == "log" and isinstance(ev.data, dict):
                print(_clean(ev.data.get("text", "")).rstrip("\n"), flush=True)
            elif ev.event == "dropped":
                print("... %s lines dropped" % (ev.data or {}).get("count"), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        s.close()
    return None


def status():
    """Print one line per installed app (state, URLs) and return the app objects."""
    apps = client().apps()
    if not apps:
        print("no apps installed")
    for a in apps:
        links = "  ".join("%s %s" % l for l in app_links(a))
        job = "  job %s" % a["job"] if a.get("job") else ""
        err = "  error: %s" % a["last_error"] if a.get("last_error") else ""
        print("%-24s %-12s %s%s%s" % (a["id"], a.get("state"), links, job, err))
    return apps


def search(text=None, category=None, limit=20):
    """Print catalog apps matching `text` (and `category`); return them."""
    got = client().catalog(q=text, category=category, limit=limit)
    for a in got["apps"]:
        flag = " [installed]" if a.get("installed") else (
            "" if a.get("installable", True) else " [%s]" % a.get("status"))
        print("%-28s %-8s %s%s" % (a["id"], a.get("category", ""), a.get("summary", ""), flag))
    if got.get("total", 0) > len(got["apps"]):
        print("... %d of %d shown" % (len(got["apps"]), got["total"]))
    return got["apps"]


# ---------------------------------------------------------------------------------------------
# The widget UI


def _widgets():
    try:
        import ipywidgets
    except ImportError:
        raise ImportError("the UI needs ipywidgets (pip install ipywidgets); without it use "
                          "pk.search/install/start/stop/logs/status") from None
    return ipywidgets


def _link(url, label=None):
    u = html.escape(url, quote=True)
    return '<a href="%s" target="_blank" rel="noopener">%s</a>' % (u, html.escape(label or url))


class _Terminal:
    """An Output widget that follows one SSE stream (an app's log stream or a job's events) from
    a background thread. Lines are kept in a bounded buffer and the widget is redrawn at most a
    few times a second, so a chatty app never floods the notebook."""

    MAX_LINES = 2000

    def __init__(self, ui):
        w = _widgets()
        self.ui = ui
        self.source = w.Dropdown(description="Follow", options=[("(nothing)", "")], value="",
                                 layout=w.Layout(width="420px"))
        self.clear_button = w.Button(description="Clear", layout=w.Layout(width="80px"))
        self.out = w.Output(layout=w.Layout(height="420px", overflow="auto",
                                            border="1px solid #ddd"))
        self.widget = w.VBox([w.HBox([self.source, self.clear_button]), self.out])
        self._lines = []
        self._partial = ""
        self._lock = threading.Lock()
        self._dirty = False
        self._gen = 0
        self._stream = None
        self._stop = threading.Event()
        self._runs = []  # [(label, value)] of jobs started from this UI
        self._apps = []
        self._quiet = False
        self._opt_lock = threading.RLock()
        self.source.observe(self._on_source, names="value")
        self.clear_button.on_click(lambda _b: self.clear())
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True)
        self._flusher.start()

    # buffer

    def text(self):
        with self._lock:
            return "".join(l + "\n" for l in self._lines) + self._partial

    def clear(self):
        with self._lock:
            self._lines, self._partial, self._dirty = [], "", True

    def write(self, text):
        text = _clean(text)
        with self._lock:
            buf = self._partial + text
            parts = buf.split("\n")
            self._partial = parts.pop()
            for p in parts:
                self._lines.append(p.rsplit("\r", 1)[-1] if "\r" in p.rstrip("\r") else p.rstrip("\r"))
            if "\r" in self._partial.rstrip("\r"):
                self._partial = self._partial.rsplit("\r", 1)[-1]
            if len(self._lines) > self.MAX_LINES:
                del self._lines[:len(self._lines) - self.MAX_LINES]
            self._dirty = True

    def _flush_loop(self):
        while not self.ui._closed.is_set():
            time.sleep(0.25)
            with self._lock:
                if not self._dirty:
                    continue
                self._dirty = False
                text = "".join(l + "\n" for l in self._lines) + self._partial
            try:
                self.out.outputs = ({"output_type": "stream", "name": "stdout", "text": text},)
            except Exception:
                pass

    # sources

    def _set_options(self):
        # ipywidgets resets a Dropdown's value when its options change: keep the selection
        # without restarting the stream being followed
        with self._opt_lock:
            opts = [("(nothing)", "")] + [("app %s: logs" % i, "app:" + i) for i in self._apps] \
                + self._runs
            if opts == list(self.source.options):
                return
            keep = self.source.value
            self._quiet = True
            try:
                self.source.options = opts
                self.source.value = keep if keep in [v for _, v in opts] else ""
            finally:
                self._quiet = False
            if self.source.value != keep:
                self._follow(self.source.value)

    def set_apps(self, ids):
        self._apps = list(ids)
        self._set_options()

    def follow_run(self, job):
        """Follow a job's events (the Terminal's source becomes that job)."""
        value = "run:%s" % job["id"]
        label = "job %s: %s %s" % (job["id"], job.get("action"), job.get("app"))
        if value not in [v for _, v in self._runs]:
            self._runs.insert(0, (label, value))
            del self._runs[20:]
            self._set_options()
        if self.source.value == value:
            self._follow(value)
        else:
            self.source.value = value  # -> _on_source -> _follow

    def follow_app(self, app_id):
        """Follow an app's live log stream."""
        value = "app:" + app_id
        if app_id not in self._apps:
            self._apps.append(app_id)
            self._set_options()
        if self.source.value == value:
            self._follow(value)
        else:
            self.source.value = value

    def _on_source(self, change):
        if not self._quiet:
            self._follow(change["new"])

    def stop(self):
        self._gen += 1
        self._stop.set()
        s, self._stream = self._stream, None
        if s is not None:
            s.close()

    def _follow(self, value):
        self.stop()
        self.clear()
        if not value:
            return
        gen = self._gen
        self._stop = stop = threading.Event()
        kind, _, ident = value.partition(":")
        t = threading.Thread(target=self._run, args=(gen, stop, kind, ident), daemon=True)
        t.start()

    def _run(self, gen, stop, kind, ident):
        c = self.ui.client
        try:
            if kind == "run":
                for ev in c.follow_run(ident, stop=stop):
                    if gen != self._gen:
                        return
                    if ev.event == "output" and isinstance(ev.data, dict):
                        self.write(ev.data.get("text", ""))
                    else:
                        line = _event_line(ev)
                        if line:
                            self.write(line + "\n")
                    if ev.event == "end":
                        self.ui._job_ended(ev.data)
                return
            while not stop.is_set() and gen == self._gen:
                s = c.log_stream(ident, lines=200)
                self._stream = s
                if gen != self._gen:
                    s.close()
                    return
                for ev in s:
                    if gen != self._gen:
                        return
                    if ev.event == "log" and isinstance(ev.data, dict):
                        text = ev.data.get("text", "")
                        self.write(text if text.endswith("\n") else text + "\n")
                    elif ev.event == "dropped":
                        self.write("... %s lines dropped\n" % (ev.data or {}).get("count"))
                if stop.wait(1.0):  # the stream closed (server restart): reconnect
                    return
                self.clear()
        except Exception as e:  # shown, never raised in a thread
            if gen == self._gen:
                self.write("[terminal: %s]\n" % e)


class UI:
    """The notebook UI: a Tab with Discover, My Library, Terminal and Active Tunnels.

    Widgets the tests (and curious users) can reach: `discover.search`, `discover.category`,
    `discover.cards[id]` (`.install`), `library.rows[id]` (`.state`, `.links`, `.start`,
    `.stop`, `.update`, `.uninstall`, `.logs`), `terminal.out`, `tunnels.html`, `message`.
    """

    def __init__(self, c=None, poll=2.0, display=False):
        w = _widgets()
        self.client = c or client()
        self._closed = threading.Event()
        self.message = w.HTML()
        self.header = w.HTML()
        self.discover = _Discover(self)
        self.library = _Library(self)
        self.terminal = _Terminal(self)
        self.tunnels = _Tunnels(self)
        self.tab = w.Tab(children=[self.discover.widget, self.library.widget,
                                   self.terminal.widget, self.tunnels.widget])
        for i, title in enumerate(["Discover", "My Library", "Terminal", "Active Tunnels"]):
            self.tab.set_title(i, title)
        self.widget = w.VBox([self.header, self.message, self.tab])
        self._header()
        self.discover.search_now()
        self.refresh()
        self._poller = None
        if poll:
            self._poller = threading.Thread(target=self._poll, args=(poll,), daemon=True)
            self._poller.start()
        if display:
            from IPython.display import display as show
            show(self.widget)

    def _ipython_display_(self):
        from IPython.display import display as show
        show(self.widget)

    def close(self):
        self._closed.set()
        self.terminal.stop()

    def say(self, text, error=False):
        color = "#b00020" if error else "#333"
        self.message.value = '<span style="color:%s">%s</span>' % (color, html.escape(text))

    def _header(self):
        try:
            s = self.client.system()
        except Exception as e:
            self.header.value = "<b>PinokioCloud</b>: engine not reachable (%s)" % html.escape(str(e))
            return
        plat = (s.get("platform") or {}).get("platform", "?")
        self.header.value = "<b>PinokioCloud %s</b> on <b>%s</b>, home <code>%s</code>, web UI %s" % (
            html.escape(str(s.get("version", ""))), html.escape(str(plat)),
            html.escape(str(s.get("home", ""))), _link(self.client.ui_url(), self.client.url + "/"))

    def refresh(self):
        try:
            self.library.refresh()
            self.tunnels.refresh()
        except Exception as e:
            self.say("refresh failed: %s" % e, error=True)

    def _poll(self, every):
        while not self._closed.wait(every):
            try:
                self.library.refresh()
                self.tunnels.refresh()
            except Exception:
                pass

    def act(self, app_id, action):
        """Run an action (install/start/stop/update/uninstall) on an app, follow its job in the
        Terminal tab. Button callbacks come here."""
        try:
            job = getattr(self.client, action)(app_id)
        except Exception as e:
            self.say("%s %s: %s" % (action, app_id, e), error=True)
            return None
        self.say("%s %s: job %s started" % (action, app_id, job.get("id")))
        self.terminal.follow_run(job)
        self.refresh()
        return job

    def _job_ended(self, job):
        if isinstance(job, dict):
            msg = "%s %s: %s" % (job.get("action"), job.get("app"), job.get("state"))
            if job.get("error"):
                msg += " (%s)" % job["error"]
            if job.get("url"):
                msg += " at %s" % job["url"]
            self.say(msg, error=job.get("state") == "failed")
        self.refresh()
        self.discover.search_now()


class _Discover:
    def __init__(self, ui):
        w = _widgets()
        self.ui = ui
        self.search = w.Text(placeholder="search apps", description="Search",
                             continuous_update=False)
        self.category = w.Dropdown(description="Category", options=[("All", "")], value="")
        self.go = w.Button(description="Search", layout=w.Layout(width="90px"))
        self.info = w.HTML()
        self.list = w.VBox()
        self.cards = {}
        self.widget = w.VBox([w.HBox([self.search, self.category, self.go]), self.info, self.list])
        self._quiet = False
        self.search.observe(lambda _c: self.search_now(), names="value")
        self.category.observe(lambda _c: self._quiet or self.search_now(), names="value")
        self.go.on_click(lambda _b: self.search_now())

    def search_now(self):
        try:
            got = self.ui.client.catalog(q=self.search.value.strip() or None,
                                         category=self.category.value or None, limit=50)
        except Exception as e:
            self.info.value = "catalog: %s" % html.escape(str(e))
            return
        cats = [("All", "")] + [(c.title(), c) for c in got.get("categories", [])]
        if cats != list(self.category.options):
            keep = self.category.value
            self._quiet = True  # changing the options resets the value: no search for that
            try:
                self.category.options = cats
                self.category.value = keep if keep in [v for _, v in cats] else ""
            finally:
                self._quiet = False
        self.info.value = "%d apps match%s" % (
            got.get("total", 0),
            ", showing %d" % len(got["apps"]) if got.get("total", 0) > len(got["apps"]) else "")
        cards = {}
        rows = []
        for a in got["apps"]:
            card = _Card(self.ui, a)
            cards[a["id"]] = card
            rows.append(card.widget)
        self.cards = cards
        self.list.children = rows


class _Card:
    def __init__(self, ui, a):
        w = _widgets()
        self.app = a
        self.title = w.HTML(
            "<b>%s</b> <code>%s</code> <small>%s</small><br><small>%s</small>" % (
                html.escape(a.get("name") or a["id"]), html.escape(a["id"]),
                html.escape(a.get("category", "")), html.escape(a.get("summary", ""))),
            layout=w.Layout(width="70%"))
        if a.get("installed"):
            label, disabled = "Installed", True
        elif not a.get("installable", True):
            label, disabled = "Unavailable", True
        else:
            label, disabled = "Install", False
        self.install = w.Button(description=label, disabled=disabled, button_style="primary"
                                if not disabled else "")
        self.install.on_click(lambda _b: ui.act(a["id"], "install"))
        self.widget = w.HBox([self.title, self.install],
                             layout=w.Layout(border_bottom="1px solid #eee", padding="4px"))


class _Row:
    def __init__(self, ui, app_id):
        w = _widgets()
        self.id = app_id
        self.title = w.HTML(layout=w.Layout(width="220px"))
        self.state = w.Label(layout=w.Layout(width="100px"))
        self.links = w.HTML(layout=w.Layout(width="360px"))
        small = w.Layout(width="90px")
        self.start = w.Button(description="Start", button_style="success", layout=small)
        self.stop = w.Button(description="Stop", button_style="warning", layout=small)
        self.update = w.Button(description="Update", layout=small)
        self.uninstall = w.Button(description="Uninstall", button_style="danger", layout=small)
        self.logs = w.Button(description="Logs", layout=small)
        self.open = w.Button(description="Open", layout=small)
        for name in ("start", "stop", "update", "uninstall"):
            getattr(self, name).on_click(lambda _b, n=name: ui.act(app_id, n))
        self.logs.on_click(lambda _b: (ui.terminal.follow_app(app_id),
                                       setattr(ui.tab, "selected_index", 2)))
        self.open.on_click(lambda _b: ui.library.open_app(app_id))
        self.widget = w.HBox([self.title, self.state, self.links, self.start, self.stop,
                              self.update, self.uninstall, self.logs, self.open])
        self.app = {}

    def show(self, a, exposures):
        self.app = a
        title = a.get("title") or a["id"]
        self.title.value = "<b>%s</b><br><small><code>%s</code></small>" % (
            html.escape(title), html.escape(a["id"]))
        state = a.get("state", "")
        if a.get("last_error") and state == "failed":
            state += " !"
        self.state.value = state
        links = app_links(a, [e for e in exposures if e.get("app") == a["id"]] or None)
        self.links.value = " ".join(_link(u, l) for l, u in links) or (
            "<small>%s</small>" % html.escape(a["last_error"]) if a.get("last_error") else "")
        busy = bool(a.get("job"))
        running = a.get("state") == "running" or bool(a.get("running"))
        self.start.disabled = busy or running
        self.stop.disabled = not (running or busy)
        self.update.disabled = busy or running
        self.uninstall.disabled = busy
        self.open.disabled = not a.get("url")


class _Library:
    def __init__(self, ui):
        w = _widgets()
        self.ui = ui
        self.rows = {}
        self.refresh_button = w.Button(description="Refresh", layout=w.Layout(width="90px"))
        self.refresh_button.on_click(lambda _b: ui.refresh())
        self.list = w.VBox()
        self.viewer = w.Output()
        self.empty = w.HTML()
        self.widget = w.VBox([self.refresh_button, self.empty, self.list, self.viewer])
        self._lock = threading.Lock()

    def refresh(self):
        apps = self.ui.client.apps()
        try:
            exposures = self.ui.client.exposures()
        except Exception:
            exposures = []
        with self._lock:
            ids = [a["id"] for a in apps]
            for a in apps:
                if a["id"] not in self.rows:
                    self.rows[a["id"]] = _Row(self.ui, a["id"])
                self.rows[a["id"]].show(a, exposures)
            for gone in [i for i in self.rows if i not in ids]:
                del self.rows[gone]
            children = tuple(self.rows[i].widget for i in ids)
            if children != tuple(self.list.children):
                self.list.children = children
            self.empty.value = "" if apps else "No apps installed yet: install one from Discover."
        self.ui.terminal.set_apps(ids)
        return apps

    def open_app(self, app_id):
        """Show the app: through the Colab kernel proxy on Colab, else its best link."""
        row = self.rows.get(app_id)
        a = row.app if row else self.ui.client.app(app_id)
        url = a.get("url")
        self.viewer.clear_output()
        with self.viewer:
            if not url:
                print("%s has no web UI URL yet" % app_id)
                return
            port = _port_of(url)
            if on_colab() and port:
                from google.colab import output as colab_output
                colab_url(port)  # remembered for the links
                colab_output.serve_kernel_port_as_iframe(port, height=720)
            else:
                from IPython.display import HTML, display
                links = app_links(a)
                best = [u for l, u in links if l != "local"] or [url]
                display(HTML(" ".join(_link(u, l) for l, u in links) +
                             "<br>opens %s" % _link(best[0])))
        if on_colab():
            self.refresh()


class _Tunnels:
    def __init__(self, ui):
        w = _widgets()
        self.ui = ui
        self.html = w.HTML()
        self.app = w.Dropdown(description="App", options=[])
        self.via = w.Dropdown(description="Via", value="", options=[("auto", "")] + [
            (v, v) for v in ("platform", "cloudflare", "ngrok", "localtunnel")])
        self.expose_button = w.Button(description="Expose")
        self.unexpose_button = w.Button(description="Unexpose")
        self.expose_button.on_click(lambda _b: self._expose())
        self.unexpose_button.on_click(lambda _b: self._unexpose())
        self.widget = w.VBox([self.html, w.HBox([self.app, self.via, self.expose_button,
                                                 self.unexpose_button])])

    def refresh(self):
        ex = self.ui.client.exposures()
        rows = []
        for e in ex:
            public = e.get("public_url")
            plat = public if e.get("via") == "platform" else None
            tunnel = public if e.get("via") != "platform" else None
            rows.append("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
                html.escape(str(e.get("app"))), html.escape(str(e.get("via"))),
                _link(e["local_url"]) if e.get("local_url") else "",
                _link(plat) if plat else "", _link(tunnel) if tunnel else "",
                html.escape(str(e.get("state") or "")) + (
                    " <small>%s</small>" % html.escape(e["note"]) if e.get("note") else "")))
        if rows:
            self.html.value = ("<table><tr><th>App</th><th>Via</th><th>Local</th><th>Platform</th>"
                               "<th>Public</th><th>State</th></tr>%s</table>" % "".join(rows))
        else:
            self.html.value = "No active tunnels: start an app (it is exposed as `pinokio start` " \
                              "does) or expose a running one below."
        running = sorted(i for i, r in self.ui.library.rows.items() if r.app.get("url"))
        if list(self.app.options) != running:
            self.app.options = running
        return ex

    def _expose(self):
        if not self.app.value:
            return
        try:
            e = self.ui.client.expose(self.app.value, via=self.via.value or None)
            self.ui.say("%s exposed via %s: %s" % (e.get("app"), e.get("via"),
                                                   e.get("public_url") or e.get("local_url")))
        except Exception as e:
            self.ui.say("expose: %s" % e, error=True)
        self.ui.refresh()

    def _unexpose(self):
        if not self.app.value:
            return
        try:
            self.ui.client.unexpose(self.app.value)
        except Exception as e:
            self.ui.say("unexpose: %s" % e, error=True)
        self.ui.refresh()
