"""Tests of the notebook launcher (examples/launcher.ipynb) and its module (pinokio_nb.py).

Run with plain `python3 test_notebook.py` (or pytest) from a venv that has nbclient, nbformat,
ipykernel and ipywidgets; scripts/test-notebook.sh sets that up. Needs:

  PINOKIO_BIN  the `pinokio` binary to test (default: $CARGO_TARGET_DIR/debug/pinokio)

`test_api_paths_documented` needs nothing but the repository. `test_notebook` builds a fixture
home whose catalog holds one app (`hello-nb`, a bare git repository in a temp folder reached
through HOME/git-mirrors), runs the notebook's three cells in a real kernel against a real
`pinokio serve`, then drives install -> start -> URL shown -> logs -> stop -> uninstall by
clicking the widgets' buttons, and checks the plain functions (pk.search/install/start/...).

`python3 test_notebook.py --timing WHEEL` runs only the notebook's cells with PINOKIO_WHEEL=WHEEL
(pip-installs the wheel into this venv) and prints how long it took until the UI showed.
"""

import ast
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NOTEBOOK = os.path.join(ROOT, "examples", "launcher.ipynb")
MODULE = os.path.join(HERE, "pinokio_nb.py")
API_DOC = os.path.join(ROOT, "docs", "api.md")
APP = "hello-nb"
FAKE_BASE = "https://example.invalid/pinokio-fixtures/"

# ---------------------------------------------------------------------------------------------
# API paths: every path the module calls must be in docs/api.md

DOC_PATH = re.compile(r"`(GET|POST|PUT|DELETE) (/api/v1/[^\s`?]*)")


def documented_paths(doc_text):
    """{(METHOD, "/api/v1/apps/{}/install"), ...} from the doc (placeholders as `{}`)."""
    return {(m, re.sub(r"\{[^}/]*\}", "{}", p)) for m, p in DOC_PATH.findall(doc_text)}


def _template(node):
    """The path template of a string argument: "x" or "x/%s" % ... (placeholders as `{}`)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        node = node.left
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("%s", "{}").replace("%d", "{}")
    return None


def module_paths(source):
    """{(METHOD, "/api/v1/..."), ...} called by the module's Client, read from its source:
    `self.request("GET", "/x" % ..)`, `self.stream("/x" % ..)` and `self._action(id, "name")`.
    Returns (paths, problems): problems are calls whose path is not a literal."""
    paths, problems = set(), []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for call in ast.walk(fn):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and isinstance(call.func.value, ast.Name) and call.func.value.id == "self"):
                continue  # only the Client's own calls (not http.client's conn.request)
            name = call.func.attr
            if name == "request" and len(call.args) >= 2 and fn.name != "_action":
                method = call.args[0].value if isinstance(call.args[0], ast.Constant) else None
                path = _template(call.args[1])
            elif name == "stream" and call.args:
                method, path = "GET", _template(call.args[0])
            elif name == "_action" and len(call.args) >= 2:
                action = call.args[1].value if isinstance(call.args[1], ast.Constant) else None
                method, path = "POST", "/apps/{}/%s" % action if action else None
            else:
                continue
            if method is None or path is None:
                problems.append("%s: line %d: %s() with a computed path" % (fn.name, call.lineno, name))
                continue
            paths.add((method, "/api/v1" + path))
    return paths, problems


def undocumented(source, doc_text):
    paths, problems = module_paths(source)
    doc = documented_paths(doc_text)
    return sorted("%s %s" % p for p in paths - doc) + problems, paths


def doc_matcher(doc_text):
    """A function (method, concrete path) -> bool: does a documented template match it?"""
    pats = [(m, re.compile("^" + re.sub(r"\\\{\\\}", "[^/]+", re.escape(p)) + "$"))
            for m, p in documented_paths(doc_text)]
    return lambda method, path: any(m == method and r.match(path) for m, r in pats)


def test_api_paths_documented():
    doc = open(API_DOC, encoding="utf-8").read()
    source = open(MODULE, encoding="utf-8").read()
    bad, paths = undocumented(source, doc)
    assert not bad, "paths the module calls that docs/api.md does not list: %s" % bad
    assert len(paths) >= 20, sorted(paths)  # the extraction found the calls
    # the check itself catches an unknown path and a computed one
    fake = textwrap.dedent('''
        class C:
            def f(self):
                self.request("GET", "/apps/%s/bogus" % x)
                self.request("POST", self.somewhere)
                self._action(1, "explode")
    ''')
    bad, _ = undocumented(fake, doc)
    assert bad == ["GET /api/v1/apps/{}/bogus", "POST /api/v1/apps/{}/explode",
                   "f: line 5: request() with a computed path"], bad
    match = doc_matcher(doc)
    assert match("POST", "/api/v1/apps/hello/install")
    assert match("GET", "/api/v1/runs/7/events")
    assert not match("GET", "/api/v1/apps/hello/install")
    assert not match("GET", "/api/v1/nope")


def test_sse_parser():
    sys.path.insert(0, HERE)
    import pinokio_nb as pk
    lines = [": ping", "id: 1", "event: output", 'data: {"text": "a"}', "",
             "data: line1", "data: line2", "", "id: 3", "event: end", "data: {\"state\":\"x\"}",
             "", "event: job", "data: not json", ""]
    evs = list(pk.parse_sse(l + "\n" for l in lines))
    assert [(e.id, e.event) for e in evs] == [
        ("1", "output"), ("1", "message"), ("3", "end"), ("3", "job")], evs
    assert evs[0].data == {"text": "a"} and evs[1].data == "line1\nline2"
    assert evs[3].data == "not json"


# ---------------------------------------------------------------------------------------------
# The fixture: a launcher in a bare git repository, a home whose catalog points at it

PINOKIO_JS = """module.exports = {
  title: "Hello notebook",
  description: "A fixture launcher: install writes a marker, start serves HTTP",
  menu: async (kernel, info) => {
    if (info.running("install.json")) {
      return [{ default: true, text: "Installing", href: "install.json" }]
    }
    if (!info.exists("installed.txt")) {
      return [{ default: true, text: "Install", href: "install.json" }]
    }
    if (info.running("start.json")) {
      const local = info.local("start.json")
      if (local.url) {
        return [{ default: true, text: "Open Web UI", href: local.url }, { text: "Terminal", href: "start.json" }]
      }
      return [{ default: true, text: "Terminal", href: "start.json" }]
    }
    return [{ default: true, text: "Start", href: "start.json" }]
  }
}
"""

INSTALL_JSON = {"run": [
    {"method": "shell.run", "params": {"message": "echo installing hello-nb step one"}},
    {"method": "shell.run", "params": {"message": "echo done > installed.txt"}},
]}

START_JSON = {"daemon": True, "run": [
    {"method": "shell.run", "params": {
        "message": "python3 -u -m http.server {{port}} --bind 127.0.0.1",
        "on": [{"event": "/(http:\\/\\/[0-9.]+:[0-9]+)/", "done": True}]}},
    {"method": "local.set", "params": {"url": "{{input.event[1]}}"}},
]}


def git(*args, cwd=None):
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid",
                    "-c", "init.defaultBranch=main", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL)


def make_fixture(root):
    """root/repos/hello-nb.git (bare) and root/home (catalog.json, git-mirrors). Returns home."""
    work = os.path.join(root, "work", APP)
    os.makedirs(work)
    with open(os.path.join(work, "pinokio.js"), "w") as f:
        f.write(PINOKIO_JS)
    for name, script in (("install.json", INSTALL_JSON), ("start.json", START_JSON)):
        with open(os.path.join(work, name), "w") as f:
            json.dump(script, f, indent=2)
    git("init", "-q", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "fixture", cwd=work)
    repos = os.path.join(root, "repos")
    os.makedirs(repos)
    git("clone", "-q", "--bare", work, os.path.join(repos, APP + ".git"))
    home = os.path.join(root, "home")
    os.makedirs(home)

    def entry(id, name, category, tags):
        return {"id": id, "name": name, "repo_url": FAKE_BASE + id,
                "clone_url": FAKE_BASE + id + ".git", "category": category, "tags": tags,
                "author": "fixtures", "installer_type": "json", "has_install_js": False,
                "has_install_json": True, "has_pinokio_js": True, "status": "ok",
                "summary": "%s fixture app" % category.title()}
    catalog = {"schema": "pinokio-catalog/1", "generated_from": "test_notebook.py", "apps": [
        entry(APP, "Hello Notebook", "UTILITY", ["fixture", "http"]),
        entry("other-audio", "Other Audio", "AUDIO", ["fixture", "tts"]),
    ]}
    with open(os.path.join(home, "catalog.json"), "w") as f:
        json.dump(catalog, f, indent=2)
    with open(os.path.join(home, "git-mirrors"), "w") as f:
        f.write("%s=file://%s/\n" % (FAKE_BASE, repos))
    return home


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pinokio_bin():
    b = os.environ.get("PINOKIO_BIN")
    if not b:
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
        b = os.path.join(target, "debug", "pinokio")
    if not os.path.isfile(b):
        raise SystemExit("no pinokio binary at %s (build it: cargo build -p pinokio-cli)" % b)
    r = subprocess.run([b, "serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise SystemExit("%s has no `serve` command yet:\n%s" % (b, r.stdout.decode()[-500:]))
    return b


# ---------------------------------------------------------------------------------------------
# Running the notebook in a kernel


class Kernel:
    """The notebook in a live kernel: its cells, then test cells, in one session."""

    def __init__(self, env):
        import nbformat
        from nbclient import NotebookClient
        self.nb = nbformat.read(NOTEBOOK, as_version=4)
        self.nbformat = nbformat
        self._saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the kernel inherits this process's environment
        self.client = NotebookClient(self.nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
        self._ctx = None

    def __enter__(self):
        self._ctx = self.client.setup_kernel()
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            self._ctx.__exit__(*exc)
        finally:
            for k, v in self._saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def code_cells(self):
        return [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code"]

    def execute(self, index):
        cell = self.nb.cells[index]
        self.client.execute_cell(cell, index)
        return stdout_of(cell)

    def run(self, code):
        """Run test code in the kernel; return what it printed."""
        cell = self.nbformat.v4.new_code_cell(textwrap.dedent(code))
        self.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        return stdout_of(cell)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def stdout_of(cell):
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append(o.get("text", ""))
        elif o.get("output_type") == "error":
            out.append(ANSI.sub("", "\n".join(o.get("traceback", []))))
    return "".join(out)


# Helpers defined in the kernel for the test cells.
KERNEL_HELPERS = r'''
import json, time, urllib.request
_calls = []
_orig_request, _orig_stream = pk.Client.request, pk.Client.stream
def _rec_request(self, method, path, *a, **kw):
    _calls.append((method, "/api/v1" + path))
    return _orig_request(self, method, path, *a, **kw)
def _rec_stream(self, path, *a, **kw):
    _calls.append(("GET", "/api/v1" + path))
    return _orig_stream(self, path, *a, **kw)
pk.Client.request, pk.Client.stream = _rec_request, _rec_stream

def wait(what, cond, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)

def app_state(i):
    try:
        return client.app(i)
    except pk.ApiError:
        return None
'''


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def test_notebook():
    binary = pinokio_bin()
    root = tempfile.mkdtemp(prefix="pinokio-nb-test-")
    home = make_fixture(root)
    port = free_port()
    env = {"PINOKIO_BIN": binary, "PINOKIO_HOME": home, "PINOKIO_PORT": str(port),
           "PINOKIO_WHEEL": "/nonexistent/should-not-be-used.whl"}
    server_pid = None
    t0 = time.time()
    try:
        with Kernel(env) as k:
            cells = k.code_cells()
            check(len(cells) == 3, "the notebook has %d code cells, not 3" % len(cells))
            out1 = k.execute(cells[0])
            check("using the given binary " + binary in out1, out1)
            k.run(KERNEL_HELPERS)
            out2 = k.execute(cells[1])
            print(out2.rstrip())
            check("Home     : " + home in out2, out2)
            check("Platform :" in out2 and "Web UI   : http://127.0.0.1:%d/" % port in out2, out2)
            server_pid = int(k.run("print(server.pid if server else -1)").strip())
            check(server_pid > 0, "the notebook did not start pinokio serve")
            k.execute(cells[2])
            t_ui = time.time() - t0
            print("notebook cells 1-3 done in %.1f s (kernel start included)" % t_ui)
            check(k.run("print(type(ui).__name__, len(ui.tab.children))").strip() == "UI 4",
                  "the UI is not a 4-tab UI")

            # Discover: search and category filter, then Install
            out = k.run('''
                ui.discover.search.value = "hello"
                print(sorted(ui.discover.cards))
                ui.discover.search.value = ""
                ui.discover.category.value = "AUDIO"
                print(sorted(ui.discover.cards))
                print(sorted(v for _, v in ui.discover.category.options))
                ui.discover.category.value = ""
            ''')
            check(out.splitlines()[:3] == [str([APP]), "['other-audio']",
                                            "['', 'AUDIO', 'UTILITY']"], out)
            out = k.run('''
                ui.discover.search.value = "hello"
                ui.discover.cards["%s"].install.click()
                a = wait("install", lambda: (app_state("%s") or {}).get("state") == "installed"
                         and not app_state("%s").get("job") and app_state("%s"))
                wait("library row", lambda: "%s" in ui.library.rows and
                     ui.library.rows["%s"].state.value == "installed")
                wait("install output in the Terminal", lambda: "installing hello-nb step one"
                     in ui.terminal.text())
                wait("the job's end in the Terminal", lambda: "succeeded" in ui.terminal.text())
                ui.discover.search_now()
                print("card:", ui.discover.cards["%s"].install.description)
                print(ui.message.value)
            ''' % ((APP,) * 7))
            check("card: Installed" in out, out)

            # My Library: Start -> running with a URL shown as a link that answers
            out = k.run('''
                row = ui.library.rows["%s"]
                row.start.click()
                wait("running", lambda: ui.library.refresh() and row.state.value == "running"
                     and "http://127.0.0.1:" in row.links.value, timeout=120)
                url = client.app("%s")["url"]
                print("URL", url)
                print("LINKS", row.links.value)
                print("PAGE", urllib.request.urlopen(url, timeout=10).status)
            ''' % (APP, APP))
            url = re.search(r"URL (http://\S+)", out).group(1)
            check('href="%s"' % url in out, out)
            check("PAGE 200" in out, out)

            # Terminal: the app's live log stream, in real time
            out = k.run('''
                row.logs.click()
                wait("log history", lambda: "Serving HTTP" in ui.terminal.text())
                try:
                    urllib.request.urlopen(url + "/live-marker-123", timeout=10)
                except Exception:
                    pass  # a 404, logged by the app
                t = time.time()
                wait("a live log line", lambda: "live-marker-123" in ui.terminal.text(), timeout=30)
                print("live line after %.2f s" % (time.time() - t))
                print("SOURCE", ui.terminal.source.value)
            ''')
            check("SOURCE app:" + APP in out, out)
            print(out.splitlines()[0])

            # Active Tunnels
            out = k.run('''
                ui.tunnels.refresh()
                print(ui.tunnels.html.value)
            ''')
            check("No active tunnels" in out or "<table>" in out, out)

            # Stop
            out = k.run('''
                row.stop.click()
                wait("stopped", lambda: ui.library.refresh() and row.state.value not in
                     ("running",) and not client.app("%s").get("job") and
                     not client.app("%s").get("url"), timeout=60)
                print("STATE", row.state.value)
                try:
                    urllib.request.urlopen(url, timeout=3)
                    print("STILL SERVING")
                except Exception:
                    print("GONE")
            ''' % (APP, APP))
            check("GONE" in out and ("STATE stopped" in out or "STATE installed" in out), out)

            # The plain functions (no widgets)
            out = k.run('''
                ui.close()
                pk.search("hello")
                pk.start("%s")
                pk.status()
                pk.logs("%s", lines=20)
                pk.stop("%s")
                pk.status()
            ''' % (APP, APP, APP))
            print(out)
            check(re.search(r"^%s\s+UTILITY" % APP, out, re.M), "search: " + out)
            check("start %s: job" % APP in out and re.search(r"local URL: http://127\.0\.0\.1:\d+", out),
                  "start: " + out)
            check(re.search(r"^%s\s+running\s+local http://" % APP, out, re.M), "status: " + out)
            check("Serving HTTP" in out, "logs: " + out)
            check("stop %s: job" % APP in out, "stop: " + out)
            check(re.search(r"^%s\s+(stopped|installed)" % APP, out, re.M), "status after stop: " + out)

            # Uninstall with the widget, then the plain install
            out = k.run('''
                ui2 = pk.UI(client, poll=0)
                ui2.library.rows["%s"].uninstall.click()
                wait("uninstalled", lambda: app_state("%s") is None, timeout=60)
                ui2.refresh()
                print("ROWS", sorted(ui2.library.rows))
                final = pk.install("%s")
                print("FINAL", final["state"])
                pk.status()
            ''' % (APP, APP, APP))
            check("ROWS []" in out, out)
            check("install %s: job" % APP in out and "installing hello-nb step one" in out, out)
            check("step 0: shell.run" in out and "FINAL succeeded" in out, out)

            # every request the module made is a documented path
            calls = json.loads(k.run("print(json.dumps(sorted(set(_calls))))"))
            match = doc_matcher(open(API_DOC, encoding="utf-8").read())
            unknown = [c for c in calls if not match(*c)]
            check(not unknown, "requests to paths docs/api.md does not list: %s" % unknown)
            print("%d distinct requests, all documented" % len(calls))
            k.run("server.terminate(); server.wait(10)")
            server_pid = None
    finally:
        subprocess.run([binary, "--home", home, "shutdown"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
        if server_pid:
            stop_pid(server_pid)
        if os.environ.get("KEEP_FIXTURE"):
            print("fixture kept at", root)
        else:
            shutil.rmtree(root, ignore_errors=True)


FAKE_CARGO = """#!/bin/sh
# a stand-in for cargo: records its arguments, "installs" the binary under test
echo "$@" >> "$HOME/cargo-calls"
mkdir -p "$HOME/.cargo/bin" && cp "$FAKE_CARGO_BIN" "$HOME/.cargo/bin/pinokio"
"""


def test_install_fallback():
    """Cell 1 without a usable wheel: a source build with cargo, from PINOKIO_SRC, else from
    the git repository (cargo is faked; HOME is a temp folder)."""
    binary = pinokio_bin()
    root = tempfile.mkdtemp(prefix="pinokio-nb-fallback-")
    fakebin = os.path.join(root, "bin")
    os.makedirs(fakebin)
    os.makedirs(os.path.join(root, "home"))
    with open(os.path.join(fakebin, "cargo"), "w") as f:
        f.write(FAKE_CARGO)
    os.chmod(os.path.join(fakebin, "cargo"), 0o755)
    env = {"PINOKIO_BIN": "", "PINOKIO_WHEEL": os.path.join(root, "no-such.whl"),
           "PINOKIO_SRC": "/src/pinokiocloud", "HOME": os.path.join(root, "home"),
           "PATH": fakebin + os.pathsep + os.environ.get("PATH", ""),
           "FAKE_CARGO_BIN": binary}
    try:
        with Kernel(env) as k:
            first = k.code_cells()[0]
            out = k.execute(first)
            k.run('os.environ.pop("PINOKIO_SRC"); SRC = None')
            k.nb.cells[first].source = k.nb.cells[first].source.replace(
                'SRC = os.environ.get("PINOKIO_SRC")', "SRC = None")
            out += k.execute(first)
            check(out.count("building from source") == 2, out)
            check("pinokio 0.1.0 at %s/home/.cargo/bin/pinokio" % root in out, out)
            check(k.run("print(pk.__name__)").strip() == "pinokio_nb", "module not imported")
        with open(os.path.join(root, "home", "cargo-calls")) as f:
            calls = f.read().splitlines()
        check(calls == ["install --locked --path /src/pinokiocloud/pinokio-cli",
                        "install --locked --git https://github.com/pinokiocloud/pinokiocloud "
                        "pinokio-cli"], calls)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def stop_pid(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def timing(wheel):
    """Run only the notebook's cells with PINOKIO_WHEEL (no PINOKIO_BIN): pip install to UI."""
    root = tempfile.mkdtemp(prefix="pinokio-nb-timing-")
    home = os.path.join(root, "home")
    env = {"PINOKIO_WHEEL": os.path.abspath(wheel), "PINOKIO_HOME": home,
           "PINOKIO_PORT": str(free_port()), "PINOKIO_BIN": ""}
    pid = None
    binary = None
    try:
        with Kernel(env) as k:
            cells = k.code_cells()
            t0 = time.time()
            times = []
            for i in cells:
                out = k.execute(i)
                times.append(time.time() - t0)
                print(out.rstrip())
            pid = int(k.run("print(server.pid if server else -1)").strip())
            binary = k.run("print(PINOKIO_BIN)").strip()
            print("pip install -> engine up -> UI: cell ends at %s s"
                  % ", ".join("%.1f" % t for t in times))
    finally:
        if binary:
            subprocess.run([binary, "--home", home, "shutdown"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
        if pid and pid > 0:
            stop_pid(pid)
        shutil.rmtree(root, ignore_errors=True)


def main(argv):
    if len(argv) >= 2 and argv[0] == "--timing":
        timing(argv[1])
        return 0
    tests = [test_api_paths_documented, test_sse_parser, test_install_fallback, test_notebook]
    only = set(argv)
    failed = 0
    for t in tests:
        if only and t.__name__ not in only:
            continue
        start = time.time()
        try:
            t()
        except (AssertionError, Exception) as e:
            failed += 1
            print("FAIL %s (%.1f s): %s: %s" % (t.__name__, time.time() - start,
                                                 type(e).__name__, e), flush=True)
            import traceback
            traceback.print_exc()
            continue
        print("ok   %s (%.1f s)" % (t.__name__, time.time() - start), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
