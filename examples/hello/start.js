module.exports = {
  run: [
    { method: "json.get", params: { settings: "{{kernel.path('demo', 'hello', 'settings.json')}}" } },
    { method: "log", params: { raw: "Says: {{args.greeting || 'hello'}} from {{local.settings.name}}, it would listen on port {{local.settings.port}}" } }
  ]
}
