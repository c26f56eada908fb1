// A JavaScript script: the export is an async function of (kernel, info).
const path = require('path')
module.exports = async (kernel, info) => ({
  run: [
    { method: "fs.read", params: { path: "{{args.dir}}/settings.json", encoding: "utf8" } },
    {
      method: "script.return",
      params: {
        summary: "{{JSON.parse(input).torch}} build, " + path.basename(__filename) + " ran with " + kernel.gpus.length + " GPU(s)"
      }
    }
  ]
})
