//! Whether two memories are duplicates (issue 12): the same fact restated, never two facts that
//! merely look alike. Memories have no other copy, so a wrong deletion is data loss; every rule
//! here errs towards keeping both.
//!
//! A text is normalised (Unicode lowercase; punctuation and whitespace folded; `25,000`,
//! `25000.00` and `12,50,000`-style lakh grouping read as plain numbers; `doesn't` read as
//! `does not`, `user's` as `user`) and split into tokens. Some tokens are *critical*:
//!
//! - anything with a digit: amounts, IDs (`MID4401`), user and order numbers, dates, times,
//!   phone numbers, versions; and a unit glued to a number (`10am`, `5kg`);
//! - currency and percent signs, emails and UPI IDs, URLs, `@handles`, identifiers and domains
//!   (`rzp_test_key`, `shop.example.com`);
//! - negations: `not` (also from `doesn't`, `cannot`…), `no`, `never`, `none`, `without`…;
//! - words whose case marks them as names or codes: capitalised but not sentence-initial
//!   (`Alice`, `Pune`), all capitals (`INR`, `UPI`), inner capitals (`PayPal`), compared
//!   case-insensitively (a word is critical for a pair when it is critical in either text).
//!
//! Two texts are duplicates when their normalised texts are equal, or when all of these hold:
//!
//! 1. their critical tokens are the same multiset;
//! 2. their other words are the same multiset too, apart from a few filler words ([`FILLER`]:
//!    `the`, `a`, `is`, `of`, `really`…): a substituted word (`morning`/`evening`, `kg`/`lb`,
//!    `tea`/`coffee`) is another fact, and so is an added one (`payouts` / `payouts on
//!    weekends`);
//! 3. those words come in the same order, or with one block of them moved (a clause moved to
//!    the front, `X and Y` read `Y and X`), where a swap of two single words does not count
//!    (`Alice is Bob's manager` is not `Alice's manager is Bob`): `from Pune to Mumbai` is not
//!    `from Mumbai to Pune`, `UPI over cards` is not `cards over UPI`;
//! 4. their word similarity is at least the threshold (`cleanup.memory_similarity`, 0.85 by
//!    default).
//!
//! The similarity is the Sørensen–Dice coefficient of the two token multisets, filler words
//! included: 2|A∩B| / (|A|+|B|). It is the score the threshold has always meant, so existing
//! configurations keep their sense; since rules 1–3 already demand the same words in nearly the
//! same order, it only bounds how many filler words two restatements may differ by. A
//! token-sequence score would not add safety: the look-alikes that used to be deleted differ in
//! one token in the middle of a long sentence, which every sequence score also rates high.
//!
//! Every duplicate of a text has the same [`Fingerprint::key`] (its tokens other than filler
//! words, sorted), so [`DuplicateIndex`] files kept texts by key and compares a new text only
//! with the kept texts of its key: tens of thousands of memories cost a hash look-up each, not a
//! comparison with every kept memory.

use std::cmp::Ordering;
use std::collections::HashMap;

/// Words a restatement may add or drop: articles, the copula, a few prepositions and
/// intensifiers. `and`, `or`, `for`, `to`, `by`, `was` and `user` are not among them.
pub const FILLER: &[&str] = &[
    "a",
    "an",
    "the",
    "is",
    "are",
    "be",
    "of",
    "in",
    "on",
    "at",
    "that",
    "which",
    "who",
    "really",
    "actually",
    "just",
    "very",
    "quite",
    "also",
    "currently",
    "basically",
    "definitely",
    "indeed",
    "simply",
];

/// Negation words; `n't` and contractions such as `cannot` and `wont` become `not`.
pub const NEGATIONS: &[&str] =
    &["not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "without"];

/// Negative contractions, with or without the apostrophe, and the word they stand for before
/// `not`. Other `…n't` forms drop the `n't` (`doesn't` is `does not`).
const NOT_WORDS: &[(&str, &str)] = &[
    ("can't", "can"),
    ("cannot", "can"),
    ("cant", "can"),
    ("won't", "will"),
    ("wont", "will"),
    ("shan't", "shall"),
    ("ain't", "is"),
    ("dont", "do"),
    ("doesnt", "does"),
    ("didnt", "did"),
    ("isnt", "is"),
    ("arent", "are"),
    ("wasnt", "was"),
    ("werent", "were"),
    ("hasnt", "has"),
    ("havent", "have"),
    ("hadnt", "had"),
    ("wouldnt", "would"),
    ("shouldnt", "should"),
    ("couldnt", "could"),
    ("mustnt", "must"),
    ("neednt", "need"),
];

/// Words around which two blocks may be swapped (`X and Y` is `Y and X`).
const COORDINATORS: &[&str] = &["and", "or"];

/// Currency and percent signs: tokens of their own.
const SYMBOLS: &[char] = &['$', '€', '£', '₹', '¥', '₩', '₽', '¢', '%'];

/// Separators that may join the parts of one token (`25,000`, `2024-03-14`, `11:30`, `v2.4`).
const JOINERS: &str = ".,-/:";

/// The longest run of non-filler words in which a moved block is looked for; longer texts must
/// keep their order.
const MAX_REORDER: usize = 64;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A word of letters (critical only when [`Token::cased`]).
    Word,
    /// A negation: `not` (also from `doesn't`, `cannot`), `no`, `never`, `without`…
    Negation,
    /// A plain number, normalised: `25,000`, `25000.00` and `25000` are all `25000`.
    Number,
    /// Digits with separators: dates, times, phone numbers, versions (`2024-03-14`, `11:30`).
    Numeric,
    /// Letters and digits: IDs and codes (`mid4401`, `ord-100234`, `v3`).
    Code,
    /// An identifier or a domain without digits (`rzp_test_key`, `shop.example.com`).
    Ident,
    /// An email address or a UPI ID (`name@bank`).
    Email,
    /// A URL.
    Url,
    /// An `@handle`.
    Handle,
    /// A currency or percent sign.
    Symbol,
}

/// One normalised token of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The normalised text, lowercase.
    pub text: String,
    /// What it is.
    pub kind: Kind,
    /// A word whose case marks it as a name or a code (capitalised but not sentence-initial,
    /// all capitals, inner capitals), or a unit glued to a number.
    pub cased: bool,
}

impl Token {
    /// A token that is not cased.
    fn new(text: impl Into<String>, kind: Kind) -> Self {
        Self { text: text.into(), kind, cased: false }
    }

    /// Whether the token is critical in its text: duplicates must agree on it.
    pub fn is_critical(&self) -> bool {
        self.kind != Kind::Word || self.cased
    }

    /// Whether a restatement may add or drop the token.
    fn is_filler(&self) -> bool {
        self.kind == Kind::Word && FILLER.contains(&self.text.as_str())
    }
}

/// What the duplicate judgement needs of one text, computed once.
#[derive(Debug, Clone)]
pub struct Fingerprint {
    /// The tokens joined by single spaces.
    normalised: String,
    /// The tokens, in text order.
    tokens: Vec<Token>,
    /// The indexes of the tokens that are not filler words, in text order.
    content: Vec<usize>,
    /// The texts of those tokens, sorted.
    key: Vec<String>,
    /// The indexes of all tokens, sorted by text: the multiset of the score.
    sorted: Vec<usize>,
}

impl Fingerprint {
    /// The fingerprint of a text.
    pub fn new(text: &str) -> Self {
        let tokens = tokens(text);
        let normalised = tokens.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ");
        let content: Vec<usize> = (0..tokens.len()).filter(|&i| !tokens[i].is_filler()).collect();
        let mut key: Vec<String> = content.iter().map(|&i| tokens[i].text.clone()).collect();
        key.sort_unstable();
        let mut sorted: Vec<usize> = (0..tokens.len()).collect();
        sorted.sort_unstable_by(|&x, &y| tokens[x].text.cmp(&tokens[y].text));
        Self { normalised, tokens, content, key, sorted }
    }

    /// The normalised text: its tokens joined by single spaces.
    pub fn normalised(&self) -> &str {
        &self.normalised
    }

    /// The tokens, in text order.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The critical tokens of this text alone, sorted.
    pub fn critical(&self) -> Vec<&str> {
        let mut critical: Vec<&str> = self.tokens.iter().filter(|t| t.is_critical()).map(|t| t.text.as_str()).collect();
        critical.sort_unstable();
        critical
    }

    /// The sorted texts of the tokens that are not filler words (the critical ones among them):
    /// every duplicate of this text has the same key.
    pub fn key(&self) -> &[String] {
        &self.key
    }

    /// The non-filler words, in text order.
    fn content(&self) -> Vec<&str> {
        self.content.iter().map(|&i| self.tokens[i].text.as_str()).collect()
    }

    /// How many tokens have this text.
    fn count(&self, text: &str) -> usize {
        self.tokens.iter().filter(|t| t.text == text).count()
    }
}

/// The similarity of two texts when they are duplicates (see the module documentation), `None`
/// when they are distinct. Equal normalised texts are duplicates whatever the threshold.
pub fn duplicate(a: &Fingerprint, b: &Fingerprint, threshold: f64) -> Option<f64> {
    if a.normalised == b.normalised {
        return Some(1.0);
    }
    if a.key != b.key || !cased_agree(a, b) || !one_move(&a.content(), &b.content()) {
        return None;
    }
    let score = dice(a, b);
    (score >= threshold).then_some(score)
}

/// Whether every word that is cased in either text occurs as often in both (critical words that
/// are also filler words, such as `A` in `plan A`, are not in the keys).
fn cased_agree(a: &Fingerprint, b: &Fingerprint) -> bool {
    a.tokens.iter().chain(&b.tokens).filter(|t| t.cased).all(|t| a.count(&t.text) == b.count(&t.text))
}

/// Whether `b` is `a`, or `a` with one block moved: equal prefixes and suffixes around a middle
/// in which two blocks are swapped.
fn one_move(a: &[&str], b: &[&str]) -> bool {
    if a == b {
        return true;
    }
    let n = a.len();
    if n != b.len() || n > MAX_REORDER {
        return false;
    }
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
    (0..=prefix).any(|p| (0..=suffix.min(n - p)).any(|s| swapped(&a[p..n - s], &b[p..n - s])))
}

/// Whether `b` is `a` with two adjacent blocks swapped (`X Y` → `Y X`, not both single words),
/// or two blocks around `and` / `or` swapped (`X and Y` → `Y and X`).
fn swapped(a: &[&str], b: &[&str]) -> bool {
    let m = a.len();
    let blocks = (1..m).any(|k| (k > 1 || m - k > 1) && a[k] == b[0] && a[k..] == b[..m - k] && a[..k] == b[m - k..]);
    blocks
        || (1..m.saturating_sub(1)).any(|k| {
            COORDINATORS.contains(&a[k]) && b[m - k - 1] == a[k] && a[k + 1..] == b[..m - k - 1] && a[..k] == b[m - k..]
        })
}

/// The Sørensen–Dice coefficient of the two token multisets: 2|A∩B| / (|A|+|B|).
fn dice(a: &Fingerprint, b: &Fingerprint) -> f64 {
    let total = a.tokens.len() + b.tokens.len();
    if total == 0 {
        return 1.0;
    }
    let (mut i, mut j, mut shared) = (0, 0, 0usize);
    while let (Some(&x), Some(&y)) = (a.sorted.get(i), b.sorted.get(j)) {
        match a.tokens[x].text.cmp(&b.tokens[y].text) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                shared += 1;
                i += 1;
                j += 1;
            }
        }
    }
    2.0 * shared as f64 / total as f64
}

/// Kept texts filed by [`Fingerprint::key`], to find a new text's duplicate among them.
#[derive(Debug)]
pub struct DuplicateIndex<T> {
    /// The similarity threshold.
    threshold: f64,
    /// The kept items by key, each bucket in insertion order.
    buckets: HashMap<Vec<String>, Vec<(T, Fingerprint)>>,
}

impl<T> DuplicateIndex<T> {
    /// An empty index judging with this similarity threshold.
    pub fn new(threshold: f64) -> Self {
        Self { threshold, buckets: HashMap::new() }
    }

    /// The first kept item (in insertion order) of which this text is a duplicate, with the
    /// similarity.
    pub fn find(&self, fingerprint: &Fingerprint) -> Option<(&T, f64)> {
        self.buckets
            .get(&fingerprint.key)?
            .iter()
            .find_map(|(item, kept)| duplicate(kept, fingerprint, self.threshold).map(|score| (item, score)))
    }

    /// Keeps an item.
    pub fn insert(&mut self, item: T, fingerprint: Fingerprint) {
        self.buckets.entry(fingerprint.key.clone()).or_default().push((item, fingerprint));
    }
}

/// The normalised tokens of a text.
pub fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut initial = true;
        for chunk in line.split_whitespace() {
            let chunk: String = chunk.chars().map(fold).collect();
            let before = out.len();
            chunk_tokens(&chunk, initial, &mut out);
            if out.len() > before {
                initial = false;
            }
            if chunk.trim_end_matches(['"', '\'', ')', ']', '}']).ends_with(['.', '!', '?']) {
                initial = true;
            }
        }
    }
    out
}

/// The normalised text: its tokens joined by single spaces.
pub fn normalise(text: &str) -> String {
    Fingerprint::new(text).normalised
}

/// Typographic quotes and dashes as their ASCII forms.
fn fold(c: char) -> char {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{02bc}' | '\u{00b4}' | '`' => '\'',
        '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{00ab}' | '\u{00bb}' => '"',
        '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2212}' => '-',
        _ => c,
    }
}

/// A chunk without its surrounding punctuation; a leading `-` or `.` before a digit, a leading
/// `@` and currency and percent signs stay.
fn trim_chunk(chunk: &str) -> &str {
    let keep = |s: &str| {
        let mut chars = s.chars();
        match chars.next() {
            Some(c) if c.is_alphanumeric() || c == '@' || SYMBOLS.contains(&c) => true,
            Some('-' | '.') => chars.next().is_some_and(|d| d.is_ascii_digit()),
            _ => false,
        }
    };
    let mut s = chunk;
    while !s.is_empty() && !keep(s) {
        let mut chars = s.chars();
        chars.next();
        s = chars.as_str();
    }
    s.trim_end_matches(|c: char| !c.is_alphanumeric() && !SYMBOLS.contains(&c))
}

/// One piece of a chunk.
enum Piece {
    /// Letters, digits, `_`, and apostrophes inside words.
    Atom(String),
    /// A separator that may join two atoms.
    Sep(char),
    /// A currency or percent sign.
    Sym(char),
    /// Any other character.
    Break,
}

/// The tokens of one whitespace-separated chunk; `initial` when it opens a sentence.
fn chunk_tokens(chunk: &str, initial: bool, out: &mut Vec<Token>) {
    let chunk = trim_chunk(chunk);
    if chunk.is_empty() {
        return;
    }
    let lower = chunk.to_lowercase();
    if lower.contains("://") || lower.starts_with("www.") {
        out.push(Token::new(lower.trim_end_matches('/'), Kind::Url));
        return;
    }
    if let Some(handle) = lower.strip_prefix('@')
        && !handle.is_empty()
        && handle.chars().all(|c| c.is_alphanumeric() || "_.-".contains(c))
    {
        out.push(Token::new(lower, Kind::Handle));
        return;
    }
    // An email, or a UPI ID (`name@bank`).
    if let Some((local, domain)) = lower.split_once('@')
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
    {
        out.push(Token::new(lower, Kind::Email));
        return;
    }
    let chars: Vec<char> = chunk.chars().collect();
    let mut pieces = Vec::new();
    let mut atom = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let apostrophe = c == '\'' && !atom.is_empty() && chars.get(i + 1).is_some_and(|n| n.is_alphabetic());
        if c.is_alphanumeric() || c == '_' || apostrophe {
            atom.push(c);
            continue;
        }
        if !atom.is_empty() {
            pieces.push(Piece::Atom(std::mem::take(&mut atom)));
        }
        pieces.push(if SYMBOLS.contains(&c) {
            Piece::Sym(c)
        } else if JOINERS.contains(c) {
            Piece::Sep(c)
        } else {
            Piece::Break
        });
    }
    if !atom.is_empty() {
        pieces.push(Piece::Atom(atom));
    }
    // A leading `-` or `.` survives trimming only before a digit: a sign or a decimal point.
    let mut prefix = match pieces.first() {
        Some(Piece::Sep('-')) => "-",
        Some(Piece::Sep('.')) => "0.",
        _ => "",
    };
    let mut first = true;
    let mut i = 0;
    while i < pieces.len() {
        match &pieces[i] {
            Piece::Sym(c) => out.push(Token::new(c.to_string(), Kind::Symbol)),
            Piece::Atom(a) => {
                let mut joined = format!("{}{a}", std::mem::take(&mut prefix));
                while let (Some(Piece::Sep(c)), Some(Piece::Atom(b))) = (pieces.get(i + 1), pieces.get(i + 2))
                    && joins(&joined, *c, b)
                {
                    joined.push(*c);
                    joined.push_str(b);
                    i += 2;
                }
                atom_tokens(&joined, initial && first, out);
                first = false;
            }
            Piece::Sep(_) | Piece::Break => {}
        }
        i += 1;
    }
}

/// Whether a separator joins two atoms into one token: `,` in `25,000`; `.` and `-` always
/// (`2.4.1`, `ORD-1234`, `two-factor`, `shop.example.com`); `/` and `:` between digits
/// (`01/04/2025`, `11:30`), not between words (`UPI/cards`).
fn joins(left: &str, sep: char, right: &str) -> bool {
    let digit = |s: &str| s.chars().any(char::is_numeric);
    match sep {
        ',' => {
            left.ends_with(|c: char| c.is_ascii_digit())
                && (2..=3).contains(&right.len())
                && right.bytes().all(|b| b.is_ascii_digit())
        }
        '.' | '-' => true,
        _ => digit(left) && digit(right),
    }
}

/// The tokens of one joined atom.
fn atom_tokens(raw: &str, initial: bool, out: &mut Vec<Token>) {
    let lower = raw.to_lowercase();
    let bare = lower.strip_suffix("'s").unwrap_or(&lower);
    if lower.chars().any(char::is_numeric) {
        number_tokens(&bare.replace('\'', ""), out);
    } else if lower.contains(['_', '.']) {
        out.push(Token::new(bare, Kind::Ident));
    } else {
        let cased = is_cased(raw, initial);
        for word in expand(&lower) {
            let kind = if NEGATIONS.contains(&word.as_str()) { Kind::Negation } else { Kind::Word };
            out.push(Token { text: word, kind, cased: cased && kind == Kind::Word });
        }
    }
}

/// Whether a word's case marks it as a name or a code: capitalised and not sentence-initial,
/// all capitals (two letters or more), or capitals after a lowercase letter.
fn is_cased(raw: &str, initial: bool) -> bool {
    let letters: Vec<char> = raw.chars().filter(|c| c.is_alphabetic()).collect();
    let Some((&first, rest)) = letters.split_first() else {
        return false;
    };
    let any_lower = letters.iter().any(|c| c.is_lowercase());
    let all_caps = !rest.is_empty() && letters.iter().all(|c| c.is_uppercase());
    let inner_caps = any_lower && rest.iter().any(|c| c.is_uppercase());
    all_caps || inner_caps || (first.is_uppercase() && !initial)
}

/// A lowercase word with its contractions expanded: `doesn't` → `does not`, `cannot` →
/// `can not`, `user's` → `user`, `they're` → `they are`.
fn expand(word: &str) -> Vec<String> {
    if let Some(&(_, base)) = NOT_WORDS.iter().find(|(w, _)| *w == word) {
        return vec![base.to_owned(), "not".to_owned()];
    }
    if let Some(base) = word.strip_suffix("n't")
        && !base.is_empty()
    {
        return vec![base.to_owned(), "not".to_owned()];
    }
    if let Some((base, tail)) = word.split_once('\'') {
        let extra = match tail {
            "s" => None,
            "re" => Some("are"),
            "ve" => Some("have"),
            "ll" => Some("will"),
            "d" => Some("would"),
            "m" => Some("am"),
            _ => return vec![word.to_owned()],
        };
        return std::iter::once(base).chain(extra).map(str::to_owned).collect();
    }
    vec![word.to_owned()]
}

/// The tokens of an atom with a digit: plain numbers, a number with a unit glued on (`10am`,
/// `5kg`: the unit is cased, so it must agree), other digit strings and codes.
fn number_tokens(s: &str, out: &mut Vec<Token>) {
    if let Some(numbers) = plain_number(s) {
        out.extend(numbers.into_iter().map(|n| Token::new(n, Kind::Number)));
        return;
    }
    let numeric = |c: char| c.is_numeric() || JOINERS.contains(c);
    if let Some(at) = s.find(char::is_alphabetic)
        && at > 0
    {
        let (number, unit) = s.split_at(at);
        if unit.chars().count() >= 2
            && unit.chars().all(char::is_alphabetic)
            && number.ends_with(char::is_numeric)
            && number.chars().all(numeric)
        {
            number_tokens(number, out);
            out.push(Token { text: unit.to_owned(), kind: Kind::Word, cased: true });
            return;
        }
    }
    let kind = if s.chars().all(numeric) { Kind::Numeric } else { Kind::Code };
    out.push(Token::new(s, kind));
}

/// A plain number (optional `-`, digits with `,` thousands or lakh grouping, optional decimals)
/// as one normalised number: `25,000` and `25000.00` are `25000`, `12,50,000` is `1250000`.
/// Commas that are not grouping separate numbers (`10,20` is `10` and `20`). `None` when the
/// text is not a plain number.
fn plain_number(s: &str) -> Option<Vec<String>> {
    let (sign, body) = s.strip_prefix('-').map_or(("", s), |body| ("-", body));
    let (int, fraction) = body.split_once('.').map_or((body, None), |(int, fraction)| (int, Some(fraction)));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let groups: Vec<&str> = int.split(',').collect();
    if !groups.iter().all(|g| digits(g)) || fraction.is_some_and(|f| !digits(f)) {
        return None;
    }
    let grouped = groups.len() == 1
        || (groups[0].len() <= 3
            && groups[1..].iter().all(|g| (2..=3).contains(&g.len()))
            && groups.last().is_some_and(|g| g.len() == 3));
    let mut numbers: Vec<String> =
        if grouped { vec![groups.concat()] } else { groups.iter().map(|g| (*g).to_owned()).collect() };
    if let Some(first) = numbers.first_mut() {
        first.insert_str(0, sign);
    }
    if let (Some(last), Some(fraction)) = (numbers.last_mut(), fraction.filter(|f| f.bytes().any(|b| b != b'0'))) {
        last.push('.');
        last.push_str(fraction);
    }
    Some(numbers)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::{DuplicateIndex, Fingerprint, duplicate, normalise};

    /// The default threshold, `cleanup.memory_similarity`.
    fn threshold() -> f64 {
        cache_core::config::CleanupSettings::default().memory_similarity
    }

    /// The similarity when `a` and `b` are duplicates, checked to be symmetric.
    fn judge(a: &str, b: &str) -> Option<f64> {
        let (fa, fb) = (Fingerprint::new(a), Fingerprint::new(b));
        let forward = duplicate(&fa, &fb, threshold());
        assert_eq!(forward, duplicate(&fb, &fa, threshold()), "not symmetric: {a:?} / {b:?}");
        forward
    }

    #[test]
    fn normalisation() {
        assert_eq!(
            normalise("Merchant MID4401 has a limit of 25,000 INR."),
            "merchant mid4401 has a limit of 25000 inr"
        );
        assert_eq!(normalise("  The user’s  limit: ₹12,50,000.00!"), "the user limit ₹ 1250000");
        assert_eq!(normalise("Doesn't accept AmEx; can't refund."), "does not accept amex can not refund");
        assert_eq!(normalise("Call +91 98450-12345 at 10:30am (IST)"), "call 91 98450-12345 at 10:30 am ist");
        assert_eq!(normalise("Values 10,20 and 1,000,000"), "values 10 20 and 1000000");
        assert_eq!(normalise("Balance -500, rate .5%"), "balance -500 rate 0.5 %");
        assert_eq!(
            normalise("Mail Accounts@Shop.in or see https://Shop.in/Docs/."),
            "mail accounts@shop.in or see https://shop.in/docs"
        );
        assert_eq!(normalise("Order #1234 (ORD-1234) shipped 2024-03-14"), "order 1234 ord-1234 shipped 2024-03-14");
        assert_eq!(normalise("!!! ..."), "");
    }

    #[test]
    fn critical_tokens() {
        let fp =
            Fingerprint::new("Alice moved MID4401 to the Pro plan at $29.99 in Pune, not Delhi; ping @alice_pays.");
        assert_eq!(fp.critical(), ["$", "29.99", "@alice_pays", "delhi", "mid4401", "not", "pro", "pune"]);
        // Sentence-initial capitals are not names by themselves; all capitals are codes.
        assert_eq!(Fingerprint::new("Prefers UPI. Pays in INR").critical(), ["inr", "upi"]);
        assert_eq!(
            Fingerprint::new("Ships via PayPal with rzp_key and shop.example.com").critical(),
            ["paypal", "rzp_key", "shop.example.com"]
        );
    }

    #[test]
    fn the_issue() {
        // The deletion of issue 12: distinct facts, one token apart.
        let old = "Merchant MID4400 has a daily payout limit of 20000 INR";
        let new = "Merchant MID4401 has a daily payout limit of 25000 INR";
        assert_eq!(judge(old, new), None);
        assert_eq!(judge("User prefers tea", "User does not prefer tea"), None);
        assert_eq!(
            judge("The user prefers tea.", "user prefers TEA"),
            judge("user prefers tea", "The user prefers tea")
        );
        assert_eq!(
            judge(
                "Merchant MID4400 has a daily payout limit of 20000 INR.",
                "merchant mid4400 has a daily payout limit of 20,000 inr"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn threshold_still_applies() {
        let (a, b) = (Fingerprint::new("User prefers tea"), Fingerprint::new("The user really prefers the tea"));
        let score = duplicate(&a, &b, 0.5).expect("a restatement");
        assert!((score - 2.0 / 3.0).abs() < 1e-9, "{score}");
        assert_eq!(duplicate(&a, &b, 0.85), None);
        // Equal normalised texts are duplicates whatever the threshold.
        assert_eq!(duplicate(&a, &Fingerprint::new("user PREFERS tea."), 1.0), Some(1.0));
    }

    /// One labelled pair of the corpus.
    struct Pair {
        /// A restatement of one fact, not two look-alike facts.
        duplicate: bool,
        /// What differs.
        category: String,
        /// The texts.
        texts: [String; 2],
    }

    /// The corpus: its pairs, and its distinct texts in file order, each with its fact (texts
    /// joined by `dup` pairs are one fact).
    fn corpus() -> (Vec<Pair>, Vec<(String, usize)>) {
        let mut pairs = Vec::new();
        for line in include_str!("duplicates_corpus.tsv").lines() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "{line:?}");
            let duplicate = match fields[0] {
                "dup" => true,
                "distinct" => false,
                other => panic!("unknown kind {other:?}"),
            };
            pairs.push(Pair { duplicate, category: fields[1].into(), texts: [fields[2].into(), fields[3].into()] });
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for text in pairs.iter().flat_map(|p| &p.texts) {
            index.entry(text).or_insert_with(|| {
                order.push(text);
                order.len() - 1
            });
        }
        // Union-find over the `dup` pairs.
        let mut parent: Vec<usize> = (0..order.len()).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for pair in pairs.iter().filter(|p| p.duplicate) {
            let (a, b) =
                (root(&mut parent, index[pair.texts[0].as_str()]), root(&mut parent, index[pair.texts[1].as_str()]));
            parent[a] = b;
        }
        let texts = (0..order.len()).map(|i| (order[i].to_owned(), root(&mut parent, i))).collect();
        (pairs, texts)
    }

    /// Recall measured on the corpus with the default threshold; it may only go up.
    const MIN_RECALL: f64 = 0.95;

    #[test]
    fn corpus_precision_and_recall() {
        let (pairs, texts) = corpus();
        assert!(texts.len() >= 200, "{} memories", texts.len());
        for pair in &pairs {
            let [a, b] = &pair.texts;
            let fact = |t: &String| texts.iter().find(|(x, _)| x == t).map(|(_, f)| *f);
            assert!(pair.duplicate || fact(a) != fact(b), "a distinct pair joined by dup lines: {a:?} / {b:?}");
        }
        // Precision: no look-alike pair, nor any two texts of different facts, is a duplicate.
        let look_alikes: Vec<&Pair> = pairs.iter().filter(|p| !p.duplicate).collect();
        let wrong: Vec<String> = look_alikes
            .iter()
            .filter_map(|p| {
                judge(&p.texts[0], &p.texts[1])
                    .map(|s| format!("{} ({s:.2}): {:?} / {:?}", p.category, p.texts[0], p.texts[1]))
            })
            .collect();
        assert!(wrong.is_empty(), "look-alikes judged duplicates:\n{}", wrong.join("\n"));
        let fingerprints: Vec<Fingerprint> = texts.iter().map(|(t, _)| Fingerprint::new(t)).collect();
        let mut other_pairs = 0;
        let mut wrong = Vec::new();
        for i in 0..texts.len() {
            for j in 0..texts.len() {
                if i != j && texts[i].1 != texts[j].1 {
                    other_pairs += usize::from(i < j);
                    if let Some(score) = duplicate(&fingerprints[i], &fingerprints[j], threshold()) {
                        wrong.push(format!("({score:.2}) {:?} / {:?}", texts[i].0, texts[j].0));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "distinct facts judged duplicates:\n{}", wrong.join("\n"));
        // Recall over the known duplicate pairs.
        let restatements: Vec<&Pair> = pairs.iter().filter(|p| p.duplicate).collect();
        let missed: Vec<&&Pair> = restatements.iter().filter(|p| judge(&p.texts[0], &p.texts[1]).is_none()).collect();
        let recall = (restatements.len() - missed.len()) as f64 / restatements.len() as f64;
        println!(
            "corpus: {} memories, {} duplicate pairs, {} look-alike pairs, {other_pairs} pairs of distinct facts in all",
            texts.len(),
            restatements.len(),
            look_alikes.len()
        );
        println!(
            "precision 100%, recall {recall:.3} ({} of {} duplicate pairs)",
            restatements.len() - missed.len(),
            restatements.len()
        );
        for pair in &missed {
            println!("missed ({}): {:?} / {:?}", pair.category, pair.texts[0], pair.texts[1]);
        }
        assert!(recall >= MIN_RECALL, "recall {recall:.3} < {MIN_RECALL}");
    }

    #[test]
    fn corpus_selection_deletes_no_distinct_fact() {
        let (_, texts) = corpus();
        let facts: HashSet<usize> = texts.iter().map(|(_, f)| *f).collect();
        for newest_first in [false, true] {
            let mut ordered: Vec<&(String, usize)> = texts.iter().collect();
            if newest_first {
                ordered.reverse();
            }
            let mut kept = DuplicateIndex::new(threshold());
            let mut deleted = 0;
            for &(text, fact) in &ordered {
                let fingerprint = Fingerprint::new(text);
                if let Some(((newer, newer_fact), _)) = kept.find(&fingerprint) {
                    assert_eq!(fact, *newer_fact, "{text:?} deleted as a duplicate of {newer:?}");
                    deleted += 1;
                    continue;
                }
                kept.insert((text, fact), fingerprint);
            }
            // Every fact keeps at least one memory.
            assert_eq!(texts.len() - deleted, kept.buckets.values().map(Vec::len).sum::<usize>());
            let kept_facts: HashSet<usize> = kept.buckets.values().flatten().map(|((_, f), _)| **f).collect();
            assert_eq!(kept_facts, facts);
            println!("selection: {deleted} of {} memories deleted, all restatements of a kept one", texts.len());
        }
    }
}
