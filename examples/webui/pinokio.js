// A small web app launcher: a venv, one package from the package index, a web server.
// `pinokio up examples/webui` installs it, starts it and prints its URL.
module.exports = {
  version: "3.7",
  title: "Hello Web UI",
  description: "A tiny web app served by bottle from its own Python venv",
  menu: async (kernel, info) => {
    if (info.running("install.json")) {
      return [{ default: true, icon: "fa-solid fa-plug", text: "Installing", href: "install.json" }]
    }
    if (!info.exists("env")) {
      return [{ default: true, icon: "fa-solid fa-plug", text: "Install", href: "install.json" }]
    }
    if (info.running("start.json")) {
      const local = info.local("start.json")
      if (local.url) {
        return [
          { default: true, icon: "fa-solid fa-rocket", text: "Open Web UI", href: local.url },
          { icon: "fa-solid fa-terminal", text: "Terminal", href: "start.json" }
        ]
      }
      return [{ default: true, icon: "fa-solid fa-terminal", text: "Terminal", href: "start.json" }]
    }
    return [
      { default: true, icon: "fa-solid fa-power-off", text: "Start", href: "start.json" },
      { icon: "fa-regular fa-circle-xmark", text: "Reset", href: "reset.json" }
    ]
  }
}
