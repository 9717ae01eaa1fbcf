//! TraceQL text to tokens, each with its byte offset, so an error can point at the place.

use crate::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    OpenBrace,
    CloseBrace,
    OpenParen,
    CloseParen,
    Comma,
    Pipe,
    AndAnd,
    OrOr,
    Not,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Match,
    NotMatch,
    Descendant,
    Ancestor,
    Tilde,
    /// `+ - * / % ^`: TraceQL's arithmetic, which spanblame refuses with a message.
    Arithmetic(char),
    /// A bare word: an intrinsic, a keyword, a function, or a scoped name (`span.a`, `span:id`).
    Word(String),
    /// `span."a b"`: a scope and a quoted attribute name (`""` for the unscoped `."a b"`).
    QuotedAttribute(String, String),
    Str(String),
    Int(i64),
    Float(f64),
    Duration(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned {
    pub token: Token,
    /// Byte offset in the query.
    pub at: usize,
}

/// The characters of an unquoted attribute name after its scope.
pub(crate) fn is_attribute_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':')
}

pub(crate) fn tokens(text: &str) -> Result<Vec<Spanned>, ParseError> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().expect("i is on a char boundary");
        let at = i;
        let next = bytes.get(i + 1).copied().map(char::from);
        let two = |t: Token| (t, 2);
        let (token, len) = match c {
            c if c.is_whitespace() => {
                i += c.len_utf8();
                continue;
            }
            '{' => (Token::OpenBrace, 1),
            '}' => (Token::CloseBrace, 1),
            '(' => (Token::OpenParen, 1),
            ')' => (Token::CloseParen, 1),
            ',' => (Token::Comma, 1),
            '~' => (Token::Tilde, 1),
            '&' if next == Some('&') => two(Token::AndAnd),
            '&' => return Err(ParseError::new(at, "a lone `&`", Some("write `&&` for \"and\""))),
            '|' if next == Some('|') => two(Token::OrOr),
            '|' => (Token::Pipe, 1),
            '!' if next == Some('=') => two(Token::Ne),
            '!' if next == Some('~') => two(Token::NotMatch),
            '!' => (Token::Not, 1),
            '=' if next == Some('~') => two(Token::Match),
            '=' if next == Some('=') => {
                return Err(ParseError::new(
                    at,
                    "`==`",
                    Some("TraceQL compares with a single `=`"),
                ));
            }
            '=' => (Token::Eq, 1),
            '>' if next == Some('=') => two(Token::Ge),
            '>' if next == Some('>') => two(Token::Descendant),
            '>' => (Token::Gt, 1),
            '<' if next == Some('=') => two(Token::Le),
            '<' if next == Some('<') => two(Token::Ancestor),
            '<' => (Token::Lt, 1),
            '"' | '`' => {
                let (value, len) = string(text, at)?;
                (Token::Str(value), len)
            }
            '-' if next.is_some_and(|n| n.is_ascii_digit()) => number(text, at)?,
            '+' | '-' | '*' | '/' | '%' | '^' => (Token::Arithmetic(c), 1),
            c if c.is_ascii_digit() => number(text, at)?,
            c if c.is_ascii_alphabetic() || c == '_' || c == '.' => word(text, at)?,
            c => {
                return Err(ParseError::new(
                    at,
                    &format!("an unexpected character `{c}`"),
                    Some(
                        "quote text with \"…\", and attribute names with other characters as span.\"a name\"",
                    ),
                ));
            }
        };
        out.push(Spanned { token, at });
        i += len;
    }
    Ok(out)
}

/// A quoted string at `at`: `"…"` with `\" \\ \n \t \r` escapes, or `` `…` `` taken as written.
fn string(text: &str, at: usize) -> Result<(String, usize), ParseError> {
    let quote = text[at..].chars().next().expect("called on a quote");
    let mut value = String::new();
    let mut chars = text[at + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((value, offset + 2)),
            '\\' if quote == '"' => match chars.next() {
                Some((_, '"')) => value.push('"'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, other)) => {
                    return Err(ParseError::new(
                        at + 1 + offset,
                        &format!("an unknown escape `\\{other}`"),
                        Some(
                            "escape only \\\" \\\\ \\n \\t \\r, or quote with backticks to take the text as written",
                        ),
                    ));
                }
                None => break,
            },
            c => value.push(c),
        }
    }
    Err(ParseError::new(at, "a string that is never closed", Some(&format!("end it with {quote}"))))
}

/// A number at `at`, with an optional fraction, exponent and duration unit.
fn number(text: &str, at: usize) -> Result<(Token, usize), ParseError> {
    let rest = &text[at..];
    let bytes = rest.as_bytes();
    let mut end = usize::from(bytes[0] == b'-');
    let digits = |mut end: usize| {
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        end
    };
    end = digits(end);
    let mut float = false;
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        float = true;
        end = digits(end + 1);
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
        if bytes.get(end + 1 + sign).is_some_and(u8::is_ascii_digit) {
            float = true;
            end = digits(end + 1 + sign);
        }
    }
    let number = &rest[..end];
    let unit_len: usize =
        rest[end..].chars().take_while(|c| c.is_alphabetic()).map(char::len_utf8).sum();
    let unit = &rest[end..end + unit_len];
    let bad = |what: &str| ParseError::new(at, what, None);
    if unit.is_empty() {
        let token = if float {
            Token::Float(number.parse().map_err(|_| bad("a malformed number"))?)
        } else {
            match number.parse() {
                Ok(n) => Token::Int(n),
                Err(_) => Token::Float(number.parse().map_err(|_| bad("a malformed number"))?),
            }
        };
        return Ok((token, end));
    }
    let nanos_per_unit: f64 = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        other => {
            return Err(ParseError::new(
                at + end,
                &format!("an unknown duration unit `{other}`"),
                Some("use ns, us, ms, s, m or h, as in 500ms"),
            ));
        }
    };
    let value: f64 = number.parse().map_err(|_| bad("a malformed duration"))?;
    let nanos = value * nanos_per_unit;
    if !(0.0..=u64::MAX as f64).contains(&nanos) {
        return Err(ParseError::new(at, "a duration below zero or too long", None));
    }
    Ok((Token::Duration(nanos.round() as u64), end + unit_len))
}

/// A word at `at`: letters, digits and `_ . - / :`, and a quoted name after a scope's dot.
fn word(text: &str, at: usize) -> Result<(Token, usize), ParseError> {
    let rest = &text[at..];
    let len: usize = rest.chars().take_while(|c| is_attribute_char(*c)).map(char::len_utf8).sum();
    let word = &rest[..len];
    if word.ends_with('.') && rest[len..].starts_with('"') {
        let (name, quoted_len) = string(text, at + len)?;
        let scope = word.trim_end_matches('.').to_owned();
        return Ok((Token::QuotedAttribute(scope, name), len + quoted_len));
    }
    Ok((Token::Word(word.to_owned()), len))
}
