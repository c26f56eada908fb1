// The menu of the built-in example launcher, evaluated like desktop Pinokio does.
const path = require('path')
module.exports = {
  version: "3.7",
  title: "Hello PinokioCloud",
  description: "A tiny launcher that shows templates, memory, files and nested scripts",
  menu: async (kernel, info) => {
    const installed = info.exists(path.resolve(kernel.homedir, "demo", "hello", "installed.json"))
    if (info.running("install.json")) {
      return [{ default: true, icon: "fa-solid fa-plug", text: "Installing", href: "install.json" }]
    }
    if (installed) {
      return [
        { default: true, icon: "fa-solid fa-power-off", text: "Start", href: "start.js", params: { greeting: "hi" } },
        { icon: "fa-solid fa-plug", text: "Reinstall", href: "install.json" },
      ]
    }
    return [{ default: true, icon: "fa-solid fa-plug", text: "Install", href: "install.json" }]
  }
}
