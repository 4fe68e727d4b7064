//! Never print credentials: URLs (database, Redis) may carry passwords, and they appear in
//! start-up errors and in the configuration's `Debug`.

/// Query parameters whose values are secrets (compared case-insensitively).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "token",
    "access_token",
    "refresh_token",
    "secret",
    "client_secret",
    "key",
    "api_key",
    "apikey",
    "auth",
    "sslpassword",
];

/// Replaces the secrets of a URL with `***`: the userinfo password, and the values of query
/// parameters named like secrets (`?password=`, `token`, `api_key`, … in any case). A value
/// that does not parse as a URL is shown as `***` whole, since where its secret sits is unknown.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "***".to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if let Some(query) = url.query() {
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| {
                let (name, _) = pair.split_once('=').unwrap_or((pair, ""));
                let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
                if SECRET_PARAMS
                    .iter()
                    .any(|s| decoded.eq_ignore_ascii_case(s))
                {
                    format!("{name}=***")
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        url.set_query(Some(&redacted.join("&")));
    }
    url.to_string()
}
