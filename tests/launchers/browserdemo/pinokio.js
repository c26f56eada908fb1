module.exports = {
  title: "Browser demo",
  description: "The fixture of the real-browser test: install writes a marker, start serves HTTP with python",
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
