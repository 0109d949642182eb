//! Ratios (shares, fractions) in the configuration: one form everywhere.
//!
//! A ratio is written `0.6` or `"60%"`. A bare number above 1 (`60`) is refused, naming both
//! accepted forms: seed 000 writes some ratios as percentages, and reading `60` as 6000% (or
//! guessing) is how a threshold silently stops meaning anything.

use serde::{Deserialize, Deserializer, de};

/// Parses the text form of a ratio: `0.6`, `60%`, `60 %`.
pub fn parse(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let value = match text.strip_suffix('%') {
        Some(number) => {
            let n: f64 = number.trim().parse().map_err(|_| format!("`{text}` is not a percentage such as \"60%\""))?;
            n / 100.0
        }
        None => {
            let n: f64 = text.parse().map_err(|_| format!("`{text}` is not a ratio: write 0.6 or \"60%\""))?;
            return check(n);
        }
    };
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("`{text}` is not between 0% and 100%"));
    }
    Ok(value)
}

fn check(n: f64) -> Result<f64, String> {
    if n.is_nan() || n < 0.0 {
        return Err(format!("`{n}` is not a ratio: write a fraction such as 0.6 or a percentage such as \"60%\""));
    }
    if n > 1.0 {
        return Err(format!(
            "`{n}` is not a ratio: write a fraction such as {} or a percentage such as \"{n}%\" (a bare number above 1 is refused)",
            n / 100.0
        ));
    }
    Ok(n)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Number(f64),
    Text(String),
}

/// `#[serde(deserialize_with = "ratio::deserialize")]` for an `f64` ratio field.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    match Raw::deserialize(deserializer).map_err(|_| de::Error::custom("expected a ratio: 0.6 or \"60%\""))? {
        Raw::Number(n) => check(n),
        Raw::Text(t) => parse(&t),
    }
    .map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_and_nothing_else() {
        assert_eq!(parse("0.6"), Ok(0.6));
        assert_eq!(parse("60%"), Ok(0.6));
        assert_eq!(parse(" 85 % "), Ok(0.85));
        assert_eq!(parse("0"), Ok(0.0));
        assert_eq!(parse("100%"), Ok(1.0));
        let e = parse("60").unwrap_err();
        assert!(e.contains("0.6") && e.contains("\"60%\""), "{e}");
        assert!(parse("160%").is_err());
        assert!(parse("-0.1").is_err());
        assert!(parse("sixty").is_err());
    }
}
