//! Secrets never reach output, logs, reports or state files.
//!
//! Two layers: typed values that redact themselves ([`SafeUrl`], [`Secret`]), and a process-wide
//! registry of every secret value seen while loading the configuration, which [`scrub`] removes
//! from any text before it is printed or written. The second layer catches secrets echoed back
//! inside third-party error messages.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// What a secret is replaced with.
pub const MASK: &str = "***";

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Adds `secret` to the registry scrubbed by [`scrub`]. Values shorter than 4 bytes are
/// ignored: masking them would garble ordinary text and they protect nothing.
pub fn register(secret: &str) {
    if secret.len() < 4 {
        return;
    }
    let mut secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
        // Longest first, so that a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Returns `text` with every registered secret (and its percent-encoded form) masked.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        for form in [Cow::Borrowed(secret.as_str()), percent_encode(secret)] {
            if out.contains(form.as_ref()) {
                out = Cow::Owned(out.replace(form.as_ref(), MASK));
            }
        }
    }
    out
}

fn percent_encode(s: &str) -> Cow<'_, str> {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().into()
}

/// A URL whose `Display`, `Debug` and `Serialize` hide the password and secret query values.
#[derive(Clone, PartialEq, Eq)]
pub struct SafeUrl(Url);

/// Query parameters whose values are secrets.
const SECRET_QUERY_KEYS: &[&str] = &["password", "pass", "token", "api_key", "apikey", "key"];

impl SafeUrl {
    /// Parses `raw` and registers its password and secret query values with [`register`].
    pub fn parse(raw: &str) -> Result<Self, url::ParseError> {
        let url = Url::parse(raw)?;
        if let Some(password) = url.password() {
            register(password);
            if let Ok(decoded) = percent_decode(password) {
                register(&decoded);
            }
        }
        for (key, value) in url.query_pairs() {
            if SECRET_QUERY_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
                register(&value);
            }
        }
        Ok(Self(url))
    }

    /// The real URL, with its secrets, for handing to a client library. Never print it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The parsed URL (secrets included). Never print it.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The URL scheme.
    pub fn scheme(&self) -> &str {
        self.0.scheme()
    }

    /// The URL with secrets masked.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some(MASK));
        }
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let masked = SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str());
                    (k.into_owned(), if masked { MASK.to_owned() } else { v.into_owned() })
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

fn percent_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| Ok(v.into_owned()))
        .unwrap_or_else(|| Ok(String::new()))
}

impl fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafeUrl({})", self.redacted())
    }
}

impl Serialize for SafeUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SafeUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        SafeUrl::parse(&raw).map_err(|e| serde::de::Error::custom(format!("not a valid URL: {e}")))
    }
}

/// The parts of a secret URL that are secrets on their own: the password, each query value
/// and each path segment of at least [`TOKEN_LEN`] characters.
fn url_tokens(url: &Url) -> Vec<String> {
    let mut out: Vec<String> = url.password().map(str::to_owned).into_iter().collect();
    out.extend(url.query_pairs().map(|(_, v)| v.into_owned()).filter(|v| v.len() >= 6));
    out.extend(url.path_segments().into_iter().flatten().filter(|s| s.len() >= TOKEN_LEN).map(str::to_owned));
    out
}

/// The shortest path segment of a secret URL taken for a token (Slack's are 24 characters;
/// words such as `services` or `webhook` are shorter).
const TOKEN_LEN: usize = 16;

/// A secret string (token, API key): shown as `***` everywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value` and registers it with [`register`]. A secret URL (a webhook's, whose
    /// token is its path or query) also registers each part that can appear alone in a log
    /// line: its password, every query value and every path segment of token length.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        if let Ok(url) = Url::parse(&value)
            && matches!(url.scheme(), "http" | "https")
        {
            url_tokens(&url).iter().for_each(|t| register(t));
        }
        Self(value)
    }

    /// The secret itself, for handing to a client library. Never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the secret, compared in constant time: both are hashed first
    /// (so neither the length nor the first differing byte shows in the time taken), then
    /// every byte of the digests is compared.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        let (a, b) = (Sha256::digest(self.0.as_bytes()), Sha256::digest(candidate));
        let differ = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(differ) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Secret::new(String::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_secret_matches_itself_only() {
        let s = super::Secret::new("api-token-0123456789abcdef");
        assert!(s.matches(b"api-token-0123456789abcdef"));
        for other in [&b""[..], b"api-token-0123456789abcdeF", b"api-token-0123456789abcdef ", b"api-token"] {
            assert!(!s.matches(other), "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn a_secret_webhook_urls_token_is_scrubbed_where_it_appears_alone() {
        let _hook =
            Secret::new("https://hooks.example.com/services/T0A1B2C3/B4D5E6F7/q8Rz31LwKpM2Nc7VxYt0Ha9s?sig=4f1c2e9a77");
        let line = "POST /services/T0A1B2C3/B4D5E6F7/q8Rz31LwKpM2Nc7VxYt0Ha9s failed; sig=4f1c2e9a77 retrying";
        let scrubbed = scrub(line);
        assert!(!scrubbed.contains("q8Rz31LwKpM2Nc7VxYt0Ha9s") && !scrubbed.contains("4f1c2e9a77"), "{scrubbed}");
        assert!(scrubbed.contains("/services/"), "words of the path stay: {scrubbed}");
    }

    use super::*;

    #[test]
    fn url_password_is_masked_in_every_rendering() {
        let url = SafeUrl::parse("redis://user:hunter2xyz@localhost:6379/0").unwrap();
        for shown in [url.to_string(), format!("{url:?}"), serde_json::to_string(&url).unwrap()] {
            assert!(!shown.contains("hunter2xyz"), "{shown}");
            assert!(shown.contains("user:***@localhost"), "{shown}");
        }
        assert!(url.expose().contains("hunter2xyz"));
    }

    #[test]
    fn secret_query_values_are_masked() {
        let url = SafeUrl::parse("https://h/x?token=abcdef123&db=1").unwrap();
        assert_eq!(url.redacted(), "https://h/x?token=***&db=1");
    }

    #[test]
    fn scrub_masks_registered_values_and_their_encodings() {
        register("s3cr3t/with space");
        let text = "failed: s3cr3t/with space and s3cr3t%2Fwith+space";
        assert_eq!(scrub(text), "failed: *** and ***");
        assert_eq!(scrub("nothing here"), "nothing here");
    }

    #[test]
    fn secret_never_displays() {
        let s = Secret::new("tok_123456");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
    }
}
