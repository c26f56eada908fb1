//! `pinokio-http`: the HTTP API and web UI of the PinokioCloud engine
//! (`pinokio serve`). It is being built: it will expose the engine's runs,
//! events (Server-Sent Events), apps and catalog over a token-protected JSON
//! API on tiny_http. Nothing is served yet.
