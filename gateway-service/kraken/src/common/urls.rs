//! Kraken's base URL and endpoint paths.

/// Production REST base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.kraken.com";

/// The path of a public method, e.g. `/0/public/Time`.
pub fn public_path(method: &str) -> String {
    format!("/0/public/{method}")
}

/// The path of a private method, e.g. `/0/private/AddOrder`; this exact string
/// is part of the signed message.
pub fn private_path(method: &str) -> String {
    format!("/0/private/{method}")
}

/// Joins a base URL (with or without a trailing slash) and a path.
pub fn join(base_url: &str, path: &str) -> String {
    format!("{}{}", base_url.trim_end_matches('/'), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_join() {
        assert_eq!(private_path("AddOrder"), "/0/private/AddOrder");
        assert_eq!(public_path("Time"), "/0/public/Time");
        assert_eq!(
            join("http://127.0.0.1:9/", "/0/public/Time"),
            "http://127.0.0.1:9/0/public/Time"
        );
        assert_eq!(
            join(DEFAULT_BASE_URL, "/0/private/Balance"),
            "https://api.kraken.com/0/private/Balance"
        );
    }
}
