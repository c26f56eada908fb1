//! The web UI: three files embedded in the binary (`pinokio-http/ui/`).
//! `/` and `/ui/*` are served to anyone (the page asks the API, which
//! answers 401 without the token, and then shows its login form).

const INDEX: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/style.css");

/// The file for a path, with its content type.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" | "/ui/" | "/ui/index.html" => {
            Some((INDEX, "text/html; charset=utf-8"))
        }
        "/ui/app.js" => Some((APP_JS, "text/javascript; charset=utf-8")),
        "/ui/style.css" => Some((STYLE, "text/css; charset=utf-8")),
        _ => None,
    }
}
