module.exports = {
  title: "Web demo",
  description: "A launcher used by the lifecycle tests: install writes a marker, start serves HTTP",
  menu: async (kernel, info) => {
    if (info.running("install.json")) {
      return [{ default: true, text: "Installing", href: "install.json" }]
    }
    if (!info.exists("installed.txt")) {
      return [{ default: true, text: "Install", href: "install.json", params: { fast: true } }]
    }
    if (info.running("start.json")) {
      const local = info.local("start.json")
      if (local.url) {
        return [{ default: true, text: "Open Web UI", href: local.url }, { text: "Terminal", href: "start.json" }]
      }
      return [{ default: true, text: "Terminal", href: "start.json" }]
    }
    return [{ default: true, text: "Start", href: "start.json" }, { text: "Reset", href: "reset.json" }]
  }
}
