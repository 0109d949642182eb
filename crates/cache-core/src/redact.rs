//! Secrets never reach output, logs, reports or state files.
//!
//! Two layers: typed values that redact themselves ([`SafeUrl`], [`Secret`]), and a process-wide
//! registry of every secret value seen while loading the configuration, which [`scrub`] removes
//! from any text before it is printed or written. The second layer catches secrets echoed back
//! inside third-party error messages.
//!
//! Text the toolkit did not write and whose secrets it cannot know (lines of an application's
//! log) also goes through [`scrub_credentials`]: whatever looks like a credential is masked there
//! (`password=…`, `token: …`, `"api_key": "…"`, `Authorization: Bearer …`, a URL's
//! `user:password@`), the one rule of what looks like one.

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

/// What a key ends in when its value is a credential (`password`, `db_password`, `X-Api-Key`,
/// `client_secret`, `accessToken`), compared without regard to case.
pub const CREDENTIAL_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "token",
    "api_key",
    "api-key",
    "apikey",
    "access_key",
    "private_key",
    "credentials",
];

/// Returns `text` with every registered secret masked ([`scrub`]) and then whatever looks like
/// a credential: the value after a key ending in one of [`CREDENTIAL_KEYS`] and `=` or `:`
/// (quoted or not, JSON included), the credential of an `Authorization` header or after
/// `Bearer`, and the password of a URL's `user:password@`. For text whose secrets the toolkit
/// cannot know, such as an application's log lines.
pub fn scrub_credentials(text: &str) -> String {
    let text = scrub(text);
    let text = url_passwords(&text);
    let text = authorization(&text);
    key_values(&text)
}

/// The byte is part of a key or a bare token.
fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// `scheme://user:password@host` → `scheme://user:***@host`.
fn url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        out.push_str(&rest[..authority_start]);
        let tail = &rest[authority_start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>'))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@').and_then(|user_end| authority[..user_end].find(':').map(|colon| (colon, user_end))) {
            Some((colon, user_end)) if colon + 1 < user_end && &authority[colon + 1..user_end] != MASK => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[user_end..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The credential of `Authorization: <scheme> <credential>` (and `Proxy-Authorization`), and
/// the token after `Bearer`: masked, the scheme kept.
fn authorization(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut i = 0;
    while i < text.len() {
        let header = lower[i..].starts_with("authorization")
            && (i == 0 || !word_byte(lower.as_bytes()[i - 1]) || lower[..i].ends_with("proxy-"));
        let bearer = lower[i..].starts_with("bearer ") && (i == 0 || !word_byte(lower.as_bytes()[i - 1]));
        if !(header || bearer) {
            i += 1;
            continue;
        }
        let bytes = text.as_bytes();
        let mut j = i + if header { "authorization".len() } else { "bearer".len() };
        if header {
            // `Authorization: Basic …`, `"authorization": "Token …"`, `authorization=…`.
            while j < bytes.len() && matches!(bytes[j], b'"' | b'\'' | b' ' | b'\t') {
                j += 1;
            }
            if j >= bytes.len() || !matches!(bytes[j], b':' | b'=') {
                i += 1;
                continue;
            }
            j += 1;
            while j < bytes.len() && matches!(bytes[j], b'"' | b'\'' | b' ' | b'\t') {
                j += 1;
            }
            // The scheme, kept (`Basic`, `Bearer`, `Token`), when a credential follows it.
            let scheme_end = j + bytes[j..].iter().take_while(|b| b.is_ascii_alphabetic()).count();
            if bytes.get(scheme_end) == Some(&b' ') {
                j = scheme_end;
            }
        }
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        let value_end = j + bytes[j..]
            .iter()
            .take_while(|b| !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\'' | b',' | b';' | b')' | b']' | b'}'))
            .count();
        if value_end > j && &text[j..value_end] != MASK {
            out.push_str(&text[at..j]);
            out.push_str(MASK);
            at = value_end;
        }
        i = value_end.max(i + 1);
    }
    out.push_str(&text[at..]);
    out
}

/// Whether `key` (a word before `=` or `:`) names a credential: it ends in one of
/// [`CREDENTIAL_KEYS`], as a whole word, after a separator (`db_password`, `x-api-key`) or
/// at a change of case (`accessToken`).
fn is_credential_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    CREDENTIAL_KEYS.iter().any(|suffix| {
        lower.ends_with(suffix) && {
            let start = key.len() - suffix.len();
            start == 0
                || matches!(key.as_bytes()[start - 1], b'_' | b'-' | b'.')
                || (key.as_bytes()[start].is_ascii_uppercase() && key.as_bytes()[start - 1].is_ascii_lowercase())
        }
    })
}

/// `password=…`, `token: …`, `"api_key": "…"`: the value masked.
fn key_values(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !matches!(bytes[i], b'=' | b':')
            || bytes.get(i + 1) == Some(&b':')
            || (bytes[i] == b':' && bytes.get(i + 1) == Some(&b'/'))
        {
            i += 1;
            continue;
        }
        // The key: back over spaces and a closing quote, then its word.
        let mut end = i;
        while end > 0 && matches!(bytes[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        if end > 0 && matches!(bytes[end - 1], b'"' | b'\'') {
            end -= 1;
        }
        let start = end - bytes[..end].iter().rev().take_while(|b| word_byte(**b)).count();
        if start == end || !is_credential_key(&text[start..end]) {
            i += 1;
            continue;
        }
        // The value: a quoted string, or a run up to a space or a separator.
        let mut j = i + 1;
        while j < bytes.len() && matches!(bytes[j], b' ' | b'\t') {
            j += 1;
        }
        let (value_start, value_end) = match bytes.get(j) {
            Some(&q @ (b'"' | b'\'')) => {
                let close = bytes[j + 1..].iter().position(|b| *b == q).map_or(bytes.len(), |p| j + 1 + p);
                (j + 1, close)
            }
            _ => (
                j,
                j + bytes[j..]
                    .iter()
                    .take_while(|b| {
                        !b.is_ascii_whitespace() && !matches!(b, b'&' | b',' | b';' | b')' | b'}' | b']' | b'"' | b'\'')
                    })
                    .count(),
            ),
        };
        if value_end > value_start && &text[value_start..value_end] != MASK {
            out.push_str(&text[at..value_start]);
            out.push_str(MASK);
            at = value_end;
        }
        i = value_end.max(i + 1);
    }
    out.push_str(&text[at..]);
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
    fn credential_looking_values_are_masked_whatever_the_secret() {
        let cases = [
            ("db connect password=hunter2xyz user=app", "db connect password=*** user=app"),
            ("retry with token: abc.def-123, attempt 2", "retry with token: ***, attempt 2"),
            ("GET /v1?user=u&api_key=k-998877&page=2", "GET /v1?user=u&api_key=***&page=2"),
            (r#"{"client_secret": "s3 cr3t", "n": 1}"#, r#"{"client_secret": "***", "n": 1}"#),
            ("config secret: 'quoted value' loaded", "config secret: '***' loaded"),
            ("X-Api-Key=m0sk_1234 accessToken=eyJabc dbPassword:pw1", "X-Api-Key=*** accessToken=*** dbPassword:***"),
            ("Authorization: Bearer eyJhbGciOi.payload.sig sent", "Authorization: Bearer *** sent"),
            ("header authorization=Basic dXNlcjpwYXNz; next", "header authorization=Basic ***; next"),
            ("proxy-authorization: Token m0-abcdef", "proxy-authorization: Token ***"),
            ("calling with bearer abcdef123456", "calling with bearer ***"),
            ("judge said 401 (Authorization: Bearer eyJ.e30.sig)", "judge said 401 (Authorization: Bearer ***)"),
            ("redis://app:hunter2xyz@10.0.0.5:6379/0 down", "redis://app:***@10.0.0.5:6379/0 down"),
            ("fetch https://user:p%40ss@host/x and http://host/y", "fetch https://user:***@host/x and http://host/y"),
            // Nothing that only looks like a key, a time, a path or a plain URL.
            (
                "10:03 ERROR tokens=5 passes=3 std::io https://h:443/p",
                "10:03 ERROR tokens=5 passes=3 std::io https://h:443/p",
            ),
            ("an empty password=", "an empty password="),
            ("key = value, secret = \"\"", "key = value, secret = \"\""),
            ("ini style: password = hunter2xyz", "ini style: password = ***"),
        ];
        for (line, want) in cases {
            assert_eq!(scrub_credentials(line), want, "{line}");
        }
        // Idempotent: a masked line stays as it is.
        for (_, want) in cases {
            assert_eq!(scrub_credentials(want), want);
        }
        // The registry still applies, first.
        register("registered-secret-77");
        assert_eq!(scrub_credentials("saw registered-secret-77 here"), "saw *** here");
    }

    #[test]
    fn secret_never_displays() {
        let s = Secret::new("tok_123456");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
    }
}
