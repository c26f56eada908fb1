// PinokioCloud JavaScript prelude.
//
// Runs once per JS context. It builds the small Node-like world that launcher
// scripts, `pinokio.js` menus and `{{ }}` templates expect (CommonJS `require`,
// `path`, `os`, a read-only `fs`, `Buffer`, `console`, timers) on top of the
// host functions that Rust installs as `globalThis.__host`.
//
// Host functions (all synchronous, strings in and out unless noted):
//   __host.readFile(path) -> string (utf8; throws on error)
//   __host.readFileBytes(path) -> string of hex digits (throws on error)
//   __host.stat(path) -> JSON string {isFile,isDirectory,isSymbolicLink,size,mtimeMs} or "" when missing
//   __host.readdir(path) -> JSON array of names (throws on error)
//   __host.log(level, text)
//   __host.sys() -> JSON string of machine facts (platform, arch, homedir, ...)
//   __host.kernel(op, argsJson) -> JSON string result (kernel/info bridge)
(function () {
  "use strict";
  const g = globalThis;
  const host = g.__host;
  const SYS = JSON.parse(host.sys());

  // ---------------------------------------------------------------- process
  g.process = {
    platform: SYS.platform,
    arch: SYS.arch,
    env: SYS.env || {},
    argv: [],
    version: "v20.0.0",
    versions: { node: "20.0.0" },
    cwd: () => SYS.cwd,
    nextTick: (fn, ...a) => Promise.resolve().then(() => fn(...a)),
  };

  // ---------------------------------------------------------------- console
  const fmt = (args) =>
    args
      .map((a) => {
        if (typeof a === "string") return a;
        try {
          return JSON.stringify(a);
        } catch (e) {
          return String(a);
        }
      })
      .join(" ");
  g.console = {
    log: (...a) => host.log("info", fmt(a)),
    info: (...a) => host.log("info", fmt(a)),
    debug: (...a) => host.log("debug", fmt(a)),
    warn: (...a) => host.log("warn", fmt(a)),
    error: (...a) => host.log("error", fmt(a)),
  };

  // ----------------------------------------------------------------- timers
  // The engine has no event loop with a clock. Timers run their callback as
  // soon as the job queue drains (the delay is not honoured); this keeps
  // `await new Promise(r => setTimeout(r, 100))` in menus from hanging.
  let timerId = 0;
  const cancelled = new Set();
  g.setTimeout = (fn, _ms, ...a) => {
    const id = ++timerId;
    Promise.resolve().then(() => {
      if (!cancelled.has(id) && typeof fn === "function") fn(...a);
    });
    return id;
  };
  g.clearTimeout = (id) => cancelled.add(id);
  g.setImmediate = g.setTimeout;
  g.clearImmediate = g.clearTimeout;
  g.setInterval = () => {
    throw new Error("setInterval is not supported in PinokioCloud scripts");
  };
  g.clearInterval = g.clearTimeout;
  g.queueMicrotask = (fn) => Promise.resolve().then(fn);
  g.structuredClone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

  // ----------------------------------------------------------------- Buffer
  const utf8Encode = (s) => {
    const out = [];
    for (let i = 0; i < s.length; i++) {
      let c = s.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
        }
      }
      if (c < 0x80) out.push(c);
      else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
      else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
    return out;
  };
  const utf8Decode = (b) => {
    let s = "";
    for (let i = 0; i < b.length; ) {
      const c = b[i];
      let cp, n;
      if (c < 0x80) (cp = c), (n = 1);
      else if (c >> 5 === 6) (cp = c & 31), (n = 2);
      else if (c >> 4 === 14) (cp = c & 15), (n = 3);
      else if (c >> 3 === 30) (cp = c & 7), (n = 4);
      else (cp = 0xfffd), (n = 1);
      if (n > 1) {
        if (i + n > b.length) {
          cp = 0xfffd;
          n = 1;
        } else {
          for (let k = 1; k < n; k++) cp = (cp << 6) | (b[i + k] & 63);
        }
      }
      s += String.fromCodePoint(cp);
      i += n;
    }
    return s;
  };
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const b64Encode = (b) => {
    let s = "";
    for (let i = 0; i < b.length; i += 3) {
      const n = (b[i] << 16) | ((b[i + 1] || 0) << 8) | (b[i + 2] || 0);
      s += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
      s += i + 1 < b.length ? B64[(n >> 6) & 63] : "=";
      s += i + 2 < b.length ? B64[n & 63] : "=";
    }
    return s;
  };
  const b64Decode = (s) => {
    s = String(s).replace(/[^A-Za-z0-9+/\-_]/g, "").replace(/-/g, "+").replace(/_/g, "/");
    const out = [];
    let bits = 0,
      acc = 0;
    for (const ch of s) {
      acc = (acc << 6) | B64.indexOf(ch);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out.push((acc >> bits) & 255);
      }
    }
    return out;
  };
  class Buffer extends Uint8Array {
    static from(value, enc) {
      if (typeof value === "string") {
        const e = String(enc || "utf8").toLowerCase();
        let bytes;
        if (e === "base64" || e === "base64url") bytes = b64Decode(value);
        else if (e === "hex") {
          bytes = [];
          for (let i = 0; i + 1 < value.length; i += 2) bytes.push(parseInt(value.substr(i, 2), 16));
        } else if (e === "latin1" || e === "binary" || e === "ascii")
          bytes = Array.from(value, (c) => c.charCodeAt(0) & 255);
        else bytes = utf8Encode(value);
        return new Buffer(bytes);
      }
      if (value && value.type === "Buffer" && Array.isArray(value.data)) return new Buffer(value.data);
      return new Buffer(Array.from(value));
    }
    static alloc(n, fill) {
      const b = new Buffer(n);
      if (fill !== undefined) b.fill(typeof fill === "number" ? fill : 0);
      return b;
    }
    static isBuffer(v) {
      return v instanceof Buffer;
    }
    static byteLength(s, enc) {
      return Buffer.from(s, enc).length;
    }
    static concat(list) {
      const all = [];
      for (const b of list) for (const x of b) all.push(x);
      return new Buffer(all);
    }
    toString(enc) {
      const e = String(enc || "utf8").toLowerCase();
      if (e === "base64") return b64Encode(this);
      if (e === "base64url") return b64Encode(this).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
      if (e === "hex") return Array.from(this, (x) => x.toString(16).padStart(2, "0")).join("");
      if (e === "latin1" || e === "binary" || e === "ascii") return String.fromCharCode(...this);
      return utf8Decode(this);
    }
    toJSON() {
      return { type: "Buffer", data: Array.from(this) };
    }
    equals(o) {
      return this.length === o.length && this.every((x, i) => x === o[i]);
    }
  }
  g.Buffer = Buffer;
  const reviveBuffer = (v) =>
    v && typeof v === "object" && v.type === "Buffer" && Array.isArray(v.data) && Object.keys(v).length === 2
      ? Buffer.from(v)
      : v;

  // ------------------------------------------------------------------- path
  const modules = Object.create(null);
  const loadVendor = (name, src) => {
    const module = { exports: {} };
    new Function("module", "exports", "process", src).call(g, module, module.exports, g.process);
    modules[name] = module.exports;
  };
  loadVendor("path", host.vendor("path"));
  const path = modules.path;
  path.posix = path;
  modules["node:path"] = path;

  // --------------------------------------------------------------------- os
  const os = {
    platform: () => SYS.platform,
    arch: () => SYS.arch,
    type: () => ({ linux: "Linux", darwin: "Darwin", win32: "Windows_NT" })[SYS.platform] || SYS.platform,
    homedir: () => SYS.homedir,
    tmpdir: () => SYS.tmpdir,
    hostname: () => SYS.hostname,
    release: () => SYS.release,
    cpus: () => Array.from({ length: SYS.cpus }, () => ({ model: SYS.cpu_model, speed: 0, times: {} })),
    totalmem: () => SYS.totalmem,
    freemem: () => SYS.freemem,
    endianness: () => "LE",
    EOL: SYS.platform === "win32" ? "\r\n" : "\n",
    userInfo: () => ({ username: SYS.username, homedir: SYS.homedir, shell: SYS.shell }),
  };
  modules.os = os;
  modules["node:os"] = os;

  // --------------------------------------------------------------------- fs
  const readOnly = (name) => () => {
    throw new Error(
      "fs." + name + " is not available: PinokioCloud gives launcher scripts a read-only fs; use the fs.write step instead"
    );
  };
  const statOf = (p, throwIfMissing) => {
    const raw = host.stat(String(p));
    if (!raw) {
      if (!throwIfMissing) return undefined;
      const e = new Error("ENOENT: no such file or directory, stat '" + p + "'");
      e.code = "ENOENT";
      throw e;
    }
    const s = JSON.parse(raw);
    return {
      size: s.size,
      mtimeMs: s.mtimeMs,
      mtime: new Date(s.mtimeMs),
      isFile: () => s.isFile,
      isDirectory: () => s.isDirectory,
      isSymbolicLink: () => s.isSymbolicLink,
    };
  };
  const readFileSync = (p, opts) => {
    const enc = typeof opts === "string" ? opts : opts && opts.encoding;
    if (enc) {
      const text = host.readFile(String(p));
      return enc === "utf8" || enc === "utf-8" ? text : Buffer.from(text).toString(enc);
    }
    return Buffer.from(host.readFileBytes(String(p)), "hex");
  };
  const fs = {
    existsSync: (p) => !!host.stat(String(p)),
    readFileSync,
    readdirSync: (p) => JSON.parse(host.readdir(String(p))),
    statSync: (p) => statOf(p, true),
    lstatSync: (p) => statOf(p, true),
    accessSync: (p) => void statOf(p, true),
    writeFileSync: readOnly("writeFileSync"),
    appendFileSync: readOnly("appendFileSync"),
    mkdirSync: readOnly("mkdirSync"),
    rmSync: readOnly("rmSync"),
    unlinkSync: readOnly("unlinkSync"),
    renameSync: readOnly("renameSync"),
    copyFileSync: readOnly("copyFileSync"),
    constants: { F_OK: 0, R_OK: 4, W_OK: 2, X_OK: 1 },
  };
  const wrapAsync = (fn) => (...a) => new Promise((res, rej) => {
    try {
      res(fn(...a));
    } catch (e) {
      rej(e);
    }
  });
  fs.promises = {
    readFile: wrapAsync(readFileSync),
    readdir: wrapAsync(fs.readdirSync),
    stat: wrapAsync(fs.statSync),
    lstat: wrapAsync(fs.lstatSync),
    access: wrapAsync(fs.accessSync),
    writeFile: wrapAsync(readOnly("promises.writeFile")),
    mkdir: wrapAsync(readOnly("promises.mkdir")),
    rm: wrapAsync(readOnly("promises.rm")),
  };
  fs.exists = (p, cb) => cb(fs.existsSync(p));
  modules.fs = fs;
  modules["node:fs"] = fs;
  modules["fs/promises"] = fs.promises;
  modules["node:fs/promises"] = fs.promises;
  modules.util = {
    promisify: (fn) => (...a) => new Promise((res, rej) => fn(...a, (e, v) => (e ? rej(e) : res(v)))),
    inspect: (v) => fmt([v]),
    format: (...a) => fmt(a),
  };
  modules["node:util"] = modules.util;

  // -------------------------------------------------------------- CommonJS
  const cache = Object.create(null);
  const isFile = (p) => {
    const raw = host.stat(p);
    return !!raw && JSON.parse(raw).isFile;
  };
  const resolveFile = (base) => {
    const tries = [base, base + ".js", base + ".json", path.join(base, "index.js"), path.join(base, "index.json")];
    for (const t of tries) if (isFile(t)) return t;
    return null;
  };
  const resolveModule = (fromDir, spec) => {
    if (spec.startsWith("./") || spec.startsWith("../") || spec.startsWith("/") || spec === "." || spec === "..") {
      return resolveFile(path.resolve(fromDir, spec));
    }
    let dir = fromDir;
    for (;;) {
      const candidate = path.join(dir, "node_modules", spec);
      const pkg = path.join(candidate, "package.json");
      if (isFile(pkg)) {
        let main = "index.js";
        try {
          main = JSON.parse(host.readFile(pkg)).main || main;
        } catch (e) {}
        const r = resolveFile(path.join(candidate, main));
        if (r) return r;
      }
      const r = resolveFile(candidate);
      if (r) return r;
      const up = path.dirname(dir);
      if (up === dir) return null;
      dir = up;
    }
  };
  const makeRequire = (fromDir) => {
    const req = (spec) => {
      spec = String(spec);
      if (modules[spec]) return modules[spec];
      if (spec === "child_process" || spec === "node:child_process" || spec === "net" || spec === "http" || spec === "https") {
        throw new Error("require('" + spec + "') is not supported in PinokioCloud launcher scripts");
      }
      const file = resolveModule(fromDir, spec);
      if (!file) {
        const e = new Error("Cannot find module '" + spec + "' from " + fromDir);
        e.code = "MODULE_NOT_FOUND";
        throw e;
      }
      return loadModule(file);
    };
    req.resolve = (spec) => {
      const f = resolveModule(fromDir, String(spec));
      if (!f) throw new Error("Cannot find module '" + spec + "'");
      return f;
    };
    req.cache = cache;
    return req;
  };
  const loadModule = (file) => {
    if (cache[file]) return cache[file].exports;
    const src = host.readFile(file);
    const module = { exports: {}, filename: file, id: file, loaded: false };
    cache[file] = module;
    try {
      if (file.toLowerCase().endsWith(".json")) {
        module.exports = JSON.parse(src);
      } else {
        const dir = path.dirname(file);
        const body = src.startsWith("#!") ? "//" + src : src;
        const fn = new Function("exports", "require", "module", "__filename", "__dirname", body + "\n//# sourceURL=" + file);
        fn.call(module.exports, module.exports, makeRequire(dir), module, file, dir);
      }
      module.loaded = true;
    } catch (e) {
      delete cache[file];
      throw e;
    }
    return module.exports;
  };
  const clearCache = () => {
    for (const k of Object.keys(cache)) delete cache[k];
  };

  // ----------------------------------------------------------------- lodash
  let lodash;
  const getLodash = () => {
    if (!lodash) {
      const module = { exports: {} };
      new Function("module", "exports", host.vendor("lodash")).call(g, module, module.exports);
      lodash = module.exports;
    }
    return lodash;
  };

  // ----------------------------------------------------------------- kernel
  const call = (op, ...args) => {
    const out = host.kernel(op, JSON.stringify(args));
    return out === "" ? undefined : JSON.parse(out);
  };
  const memProxy = (op) =>
    new Proxy(
      {},
      {
        get: (_t, k) => (typeof k === "string" ? call(op, k) : undefined),
        has: (_t, k) => typeof k === "string" && call(op, k) !== undefined,
        ownKeys: () => call(op + "_keys") || [],
        getOwnPropertyDescriptor: (_t, k) => {
          const v = call(op, k);
          return v === undefined ? undefined : { value: v, enumerable: true, configurable: true };
        },
      }
    );
  const makeInfo = (root) => {
    const abs = (parts) => path.resolve(root, ...parts.map(String));
    return {
      exists: (...p) => !!host.stat(abs(p)),
      running: (...p) => !!call("running", abs(p)),
      local: (...p) => call("local", abs(p)) || {},
      global: (...p) => call("global", abs(p)) || {},
      ready: (...p) => !!call("ready", abs(p)),
      path: (...p) => abs(p),
      cwd: () => root,
      venv: async (dir) => call("venvs", dir ? path.resolve(root, String(dir)) : root) || [],
    };
  };
  const makeKernel = (facts, root) => {
    const home = facts.home;
    const homeAbs = (parts) => path.resolve(home, ...parts.map(String));
    const cwdAbs = (parts) => path.resolve(...parts.map(String));
    const scriptPath = (first, rest) => {
      const f = String(first);
      if (f.startsWith("~/")) return path.resolve(home, f.slice(2), ...rest.map(String));
      if (path.isAbsolute(f)) return path.resolve(f, ...rest.map(String));
      if (f.startsWith("http")) {
        const r = call("resolve_git", f);
        return r ? path.resolve(r, ...rest.map(String)) : null;
      }
      throw new Error("uri must be either an http uri or start with ~/ (got " + f + ")");
    };
    const k = {
      platform: facts.platform,
      arch: facts.arch,
      gpu: facts.gpu,
      gpus: facts.gpus,
      gpu_model: facts.gpu_model,
      gpu_driver: facts.gpu_driver,
      gpu_target: facts.gpu_target,
      vram: facts.vram,
      ram: facts.ram,
      homedir: home,
      envs: facts.envs || {},
      os,
      path: (...p) => homeAbs(p),
      exists: async (...p) => !!host.stat(homeAbs(p)),
      running: (...p) => !!call("running", cwdAbs(p)),
      local: (...p) => call("local", cwdAbs(p)) || {},
      global: (...p) => call("global", cwdAbs(p)) || {},
      status: (uri, cwd) => !!call("running", path.resolve(cwd || home, String(uri))),
      which: (name) => call("which", String(name)) || null,
      port: async () => call("port"),
      ports: async (n) => call("ports", n),
      env: async (...p) => call("env_for", homeAbs(p)) || {},
      load: async (...p) => loadModule(homeAbs(p)),
      require: async (...p) => loadModule(homeAbs(p)),
      bin: { path: (...p) => path.resolve(home, "bin", ...p.map(String)) },
      memory: { local: memProxy("local"), global: memProxy("global") },
      api: { running: memProxy("running_mark") },
      script: {
        resolve: (f, ...r) => scriptPath(f, r),
        exists: (f, ...r) => {
          const p = scriptPath(f, r);
          return !!p && !!host.stat(p);
        },
        running: (f, ...r) => {
          const p = scriptPath(f, r);
          return !!p && !!call("running", p);
        },
        ready: (f, ...r) => {
          const p = scriptPath(f, r);
          return !!p && !!call("ready", p);
        },
        local: (f, ...r) => {
          const p = scriptPath(f, r);
          return p ? call("local", p) || {} : null;
        },
        global: (f, ...r) => {
          const p = scriptPath(f, r);
          return p ? call("global", p) || {} : null;
        },
      },
      exec: () => {
        throw new Error("kernel.exec is not supported in PinokioCloud menus and templates; use a shell.run step");
      },
    };
    k.info = makeInfo(root || home);
    return k;
  };

  // ------------------------------------------------------- script loading
  // Loads a .js script or pinokio.js and normalises its export the way
  // pinokiod's loader does (ES-module default unwrap, `new Export()` attempt).
  const normaliseExport = (exp) => {
    if (exp && typeof exp === "object" && "default" in exp && (exp.__esModule === true || exp[Symbol.toStringTag] === "Module")) {
      exp = exp.default;
    }
    if (typeof exp === "function") {
      try {
        const constructed = new exp();
        return constructed;
      } catch (e) {
        return exp;
      }
    }
    return exp;
  };

  // JSON conversion that keeps Buffers in Node's toJSON shape and marks functions.
  const toJSONText = (v) => {
    const seen = new WeakSet();
    return JSON.stringify(v, function (key, val) {
      if (typeof val === "function") return { $function: key || "(anonymous)" };
      if (typeof val === "bigint") return String(val);
      if (val && typeof val === "object") {
        if (seen.has(val)) return "[Circular]";
        seen.add(val);
      }
      return val;
    });
  };

  const state = {
    facts: null,
    exported: null, // last loaded script object (kept for run functions and menus)
    scopeVals: [],
    scopeNames: [],
    fnCache: new Map(),
    sticky: {},
    kernels: new Map(),
  };
  let lastNamesJson = null;
  let lastNames = [];
  const names_cache = (json) => {
    if (json !== lastNamesJson) {
      lastNamesJson = json;
      lastNames = JSON.parse(json);
    }
    return lastNames;
  };

  const resultOf = (v) => (v === undefined ? "u" : "v" + toJSONText(v));
  // Drive a value that may be a promise to completion (the host runs the job queue).
  const settle = (v, done) => {
    if (v && typeof v.then === "function") {
      v.then(
        (r) => done("ok", r),
        (e) => done("err", e)
      );
    } else done("ok", v);
  };
  const errText = (e) => {
    if (e && e.stack && e.message !== undefined) return (e.name || "Error") + ": " + e.message;
    return String(e);
  };

  g.__pk = {
    setFacts(json) {
      state.facts = JSON.parse(json);
      state.kernels = new Map();
      g.process.env = state.facts.envs || g.process.env;
    },
    clearModuleCache: clearCache,
    // Load a script file; returns "v<json>" of the (awaited) script object.
    // `slot` receives completion: [status, text].
    loadScript(file, root, slot) {
      clearCache();
      let exp;
      try {
        exp = normaliseExport(loadModule(file));
      } catch (e) {
        slot.push("err", errText(e));
        return;
      }
      const kernel = makeKernel(state.facts, root);
      const finish = (status, v) => {
        if (status === "err") {
          slot.push("err", errText(v));
          return;
        }
        state.exported = v;
        slot.push("ok", resultOf(v));
      };
      if (typeof exp === "function") {
        try {
          settle(exp(kernel, kernel.info), finish);
        } catch (e) {
          finish("err", e);
        }
      } else finish("ok", exp);
    },
    // Call a function-valued key of the last loaded object (e.g. `run` or `menu`).
    callExported(key, root, ctxJson, slot) {
      const obj = state.exported;
      const fn = obj && obj[key];
      if (typeof fn !== "function") {
        slot.push("ok", resultOf(fn));
        return;
      }
      const kernel = makeKernel(state.facts, root);
      let ctx = ctxJson ? JSON.parse(ctxJson) : undefined;
      if (ctx) {
        ctx.kernel = kernel;
        ctx.info = kernel.info;
      }
      try {
        settle(fn.call(obj, kernel, kernel.info, ctx), (status, v) =>
          status === "err" ? slot.push("err", errText(v)) : slot.push("ok", resultOf(v))
        );
      } catch (e) {
        slot.push("err", errText(e));
      }
    },
    // Install the template scope for the coming evaluations.
    setScope(namesJson, valuesJson, stickyJson, root) {
      const names = names_cache(namesJson);
      const data = JSON.parse(valuesJson);
      if (stickyJson) Object.assign(state.sticky, JSON.parse(stickyJson));
      let kernel = state.kernels.get(root);
      if (!kernel) {
        kernel = makeKernel(state.facts, root);
        state.kernels.set(root, kernel);
      }
      const cwd = data.cwd || root;
      const builtins = {
        _: getLodash(),
        os,
        path,
        kernel,
        exists: (...p) => !!host.stat(path.resolve(cwd, ...p.map(String))),
        running: (...p) => (call("running", path.resolve(cwd, ...p.map(String))) ? true : undefined),
        ready: (...p) => !!call("ready", path.resolve(cwd, ...p.map(String))),
        which: kernel.which,
        key: (h) => call("key", String(h)),
        script: kernel.script,
        proxy: (port) => "http://localhost:" + port,
        pip: { install: { torch: data.__pip_torch } },
      };
      if ("input" in data) data.input = reviveBuffer(data.input);
      const vals = names.map((n) => (n in builtins ? builtins[n] : n in state.sticky ? state.sticky[n] : data[n]));
      const envIdx = names.indexOf("env");
      const envsIdx = names.indexOf("envs");
      if (envIdx >= 0 && envsIdx >= 0) vals[envsIdx] = vals[envIdx];
      if (names !== state.scopeNames) {
        state.fnCache.clear();
        state.scopeNames = names;
      }
      state.scopeVals = vals;
    },
    // Evaluate `return <expr>` with the scope. mode "w": whole value (JSON),
    // "t": text (String(value)). Result prefix: v=value, u=undefined,
    // e=runtime error, s=syntax error.
    evaluate(expr, mode) {
      let fn = state.fnCache.get(expr);
      if (fn === undefined) {
        try {
          fn = new Function(...state.scopeNames, "return " + expr);
        } catch (e) {
          fn = { syntax: errText(e) };
        }
        state.fnCache.set(expr, fn);
      }
      if (typeof fn !== "function") return "s" + fn.syntax;
      let v;
      try {
        v = fn.apply(undefined, state.scopeVals);
      } catch (e) {
        return "e" + errText(e);
      }
      if (v === undefined) return "u";
      if (mode === "t") return "v" + String(v);
      try {
        return "v" + toJSONText(v);
      } catch (e) {
        return "v" + JSON.stringify(String(v));
      }
    },
    // Match a JS-syntax regex against text; returns JSON of the match array or "".
    regexExec(source, flags, text) {
      const m = new RegExp(source, flags).exec(text);
      return m ? JSON.stringify(Array.from(m)) : "";
    },
  };
})();
