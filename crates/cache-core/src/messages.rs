//! Messages that stay readable: many of one kind become one line with a count and the first
//! example, and no line is longer than [`MAX_LINE`] characters. A cluster error repeated for
//! every key of a pass, or a server reply quoting a whole pipeline, must not become a
//! 27,000-character cell in a table, a JSON report or a cron mail.

/// The longest message kept whole, in characters.
pub const MAX_LINE: usize = 300;

/// `text`, cut at `max` characters with a note of how long it was.
pub fn clip(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max).collect();
    format!("{kept}… ({count} characters in all)")
}

/// The kind of a message: its text up to the first digit, quote or colon after the first few
/// words, so that "MOVED 3999 127.0.0.1:7001" and "MOVED 12 127.0.0.1:7002" are one kind.
fn kind(message: &str) -> String {
    message.chars().take_while(|c| !c.is_ascii_digit() && !matches!(c, '`' | '"' | '\'')).take(60).collect()
}

/// `messages` with those of one kind folded into one line ("N× first example"), in the order
/// their kinds first appear, each clipped to [`MAX_LINE`].
pub fn condense(messages: &[String]) -> Vec<String> {
    let mut kinds: Vec<(String, usize, &str)> = Vec::new();
    for message in messages {
        let k = kind(message);
        match kinds.iter_mut().find(|(seen, _, _)| *seen == k) {
            Some((_, n, _)) => *n += 1,
            None => kinds.push((k, 1, message)),
        }
    }
    kinds
        .into_iter()
        .map(|(_, n, first)| {
            let first = clip(first, MAX_LINE);
            if n == 1 { first } else { format!("{n}× {first} (and {} more like it)", n - 1) }
        })
        .collect()
}

/// `text` with each of its lines cut at `max` characters (see [`clip`]): for the last line of
/// defence, a message that may hold anything.
pub fn clip_lines(text: &str, max: usize) -> String {
    text.split('\n').map(|line| clip(line, max)).collect::<Vec<_>>().join("\n")
}

/// `messages` as one line for a table cell or a single field: [`condense`]d, the kinds joined
/// with `; `, the whole cut at [`MAX_LINE`] (each kind's count comes first, so it survives).
pub fn one_line(messages: &[String]) -> String {
    clip(&condense(messages).join("; "), MAX_LINE)
}

/// `name` (a key or file name) fit for a terminal: control characters escaped as `redis-cli`
/// shows them (`\n`, `\r`, `\t`, `\x1b`...), a backslash doubled, and cut at `max` characters
/// with a note of the full length. A name can never move the cursor, ring the bell or recolour
/// the screen, and five 1 MB names print as five short lines. JSON keeps the exact name.
pub fn printable(name: &str, max: usize) -> String {
    let mut out = String::new();
    for (shown, c) in name.chars().enumerate() {
        if shown >= max {
            out.push_str(&format!("… ({} characters in all)", name.chars().count()));
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_without_control_characters_and_cut_when_long() {
        assert_eq!(printable("a\x1b[31mred\r\x07b\\c", 100), "a\\x1b[31mred\\r\\x07b\\\\c");
        assert_eq!(printable("plain:key", 100), "plain:key");
        let long = "k".repeat(1_000_000);
        let shown = printable(&long, 80);
        assert!(shown.starts_with(&"k".repeat(80)) && shown.ends_with("(1000000 characters in all)"), "{shown}");
        assert!(shown.len() < 120);
        assert!(!printable("\u{9b}31m", 10).contains('\u{9b}'));
    }

    #[test]
    fn many_of_a_kind_fold_and_long_lines_are_clipped() {
        let mut messages: Vec<String> = (0..500).map(|i| format!("MOVED {i} 127.0.0.1:{}", 7000 + i % 3)).collect();
        messages.push("connection refused".into());
        messages.push(format!("huge: {}", "x".repeat(27_000)));
        let out = condense(&messages);
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[0], "500× MOVED 0 127.0.0.1:7000 (and 499 more like it)");
        assert_eq!(out[1], "connection refused");
        assert!(out[2].chars().count() < MAX_LINE + 40 && out[2].ends_with("(27006 characters in all)"), "{}", out[2]);
        assert_eq!(clip("short", 10), "short");
    }

    #[test]
    fn one_line_keeps_the_counts_and_clip_lines_cuts_each_line() {
        let mut messages: Vec<String> =
            (0..3000).map(|i| format!("PEXPIRE refused: unknown command 'PEXPIRE' for 'k:{i}'")).collect();
        messages.push("connection refused".into());
        let line = one_line(&messages);
        assert_eq!(
            line,
            "3000× PEXPIRE refused: unknown command 'PEXPIRE' for 'k:0' (and 2999 more like it); connection refused"
        );
        let many: Vec<String> =
            (0..50).map(|i| format!("kind {} of error: {}", "x".repeat(i), "y".repeat(200))).collect();
        let line = one_line(&many);
        assert!(line.starts_with("kind  of error: ") && line.chars().count() < MAX_LINE + 40, "{line}");
        let text = format!("short\n{}\nlast", "z".repeat(5000));
        let clipped = clip_lines(&text, 100);
        let lines: Vec<&str> = clipped.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!((lines[0], lines[2]), ("short", "last"));
        assert!(lines[1].ends_with("(5000 characters in all)") && lines[1].chars().count() < 140, "{}", lines[1]);
    }
}
