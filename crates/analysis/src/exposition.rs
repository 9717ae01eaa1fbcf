//! What Prometheus's text exposition format asks of every series, shared by `/metrics` and
//! `/metrics/spans`.

/// A label value as the text format writes it: `\`, `"` and newlines escaped.
pub fn label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::label_value;

    #[test]
    fn quotes_backslashes_and_newlines_are_escaped() {
        assert_eq!(label_value(r#"GET /a"b\c"#), r#"GET /a\"b\\c"#);
        assert_eq!(label_value("two\nlines"), "two\\nlines");
        assert_eq!(label_value("plain"), "plain");
    }
}
