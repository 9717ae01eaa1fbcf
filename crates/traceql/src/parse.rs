//! Tokens to a [`Pipeline`]: precedence climbing for spanset and field operators, and a
//! message with a hint for everything TraceQL has that spanblame does not (metrics queries,
//! arithmetic, event and link scopes), so nothing is silently ignored.

use crate::ParseError;
use crate::ast::{
    Aggregate, Attribute, AttributeScope, BinaryOp, CHANGE_FIELDS, Field, Intrinsic, Pipeline,
    SpansetExpr, SpansetOp, Stage, Static,
};
use crate::lex::{Spanned, Token};

/// TraceQL's metrics functions: a different kind of query, answered by Tempo's metrics API.
const METRICS_FUNCTIONS: &[&str] = &[
    "rate",
    "count_over_time",
    "sum_over_time",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "quantile_over_time",
    "histogram_over_time",
    "compare",
    "topk",
    "bottomk",
];

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

pub(crate) struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Spanned>,
    next: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(text: &'a str, tokens: Vec<Spanned>) -> Parser<'a> {
        Parser { text, tokens, next: 0, depth: 0 }
    }

    pub(crate) fn query(&mut self) -> Result<Pipeline, ParseError> {
        if self.tokens.is_empty() {
            return Err(ParseError::new(0, "an empty query", Some("select every span with { }")));
        }
        let pipeline = self.pipeline()?;
        match self.peek() {
            None => Ok(pipeline),
            Some(Token::CloseParen) => Err(self.error("a `)` that closes nothing", None)),
            Some(_) => Err(self.error(
                &format!("{} after a complete query", self.describe()),
                Some("join spansets with && || > >> < << ~, or pipe them with |"),
            )),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|s| &s.token)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.next).map_or(self.text.len(), |s| s.at)
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).map(|s| s.token.clone());
        self.next += 1;
        token
    }

    fn describe(&self) -> String {
        match self.peek() {
            None => "the end of the query".into(),
            Some(Token::Word(w)) => format!("`{w}`"),
            Some(Token::Str(s)) => format!("the string \"{s}\""),
            Some(_) => {
                let at = self.at();
                let next = self.tokens.get(self.next + 1).map_or(self.text.len(), |s| s.at);
                format!("`{}`", self.text[at..next].trim())
            }
        }
    }

    fn error(&self, found: &str, hint: Option<&str>) -> ParseError {
        ParseError::new(self.at(), found, hint)
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(&token) {
            self.bump();
            Ok(())
        } else {
            Err(self.error(&format!("{} where {what} belongs", self.describe()), None))
        }
    }

    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nesting deeper than 64 levels", Some("write a flatter query")));
        }
        Ok(())
    }

    fn pipeline(&mut self) -> Result<Pipeline, ParseError> {
        let first = self.spanset(0)?;
        let mut stages = Vec::new();
        while self.peek() == Some(&Token::Pipe) {
            self.bump();
            stages.push(self.stage()?);
        }
        Ok(Pipeline { first, stages })
    }

    fn spanset_op(&self) -> Option<SpansetOp> {
        Some(match self.peek()? {
            Token::AndAnd => SpansetOp::And,
            Token::OrOr => SpansetOp::Or,
            Token::Gt => SpansetOp::Child,
            Token::Descendant => SpansetOp::Descendant,
            Token::Lt => SpansetOp::Parent,
            Token::Ancestor => SpansetOp::Ancestor,
            Token::Tilde => SpansetOp::Sibling,
            _ => return None,
        })
    }

    fn spanset(&mut self, min_precedence: u8) -> Result<SpansetExpr, ParseError> {
        self.deeper()?;
        let mut left = self.spanset_operand()?;
        while let Some(op) = self.spanset_op() {
            let precedence = spanset_precedence(op);
            if precedence < min_precedence {
                break;
            }
            self.bump();
            let right = self.spanset(precedence + 1)?;
            left = SpansetExpr::Binary(Box::new(left), op, Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn spanset_operand(&mut self) -> Result<SpansetExpr, ParseError> {
        match self.peek() {
            Some(Token::OpenBrace) => Ok(SpansetExpr::Filter(self.braces()?)),
            Some(Token::OpenParen) => {
                self.bump();
                self.deeper()?;
                let inner = self.pipeline()?;
                self.depth -= 1;
                self.expect(Token::CloseParen, "the `)` closing this group")?;
                Ok(if inner.stages.is_empty() {
                    inner.first
                } else {
                    SpansetExpr::Pipeline(Box::new(inner))
                })
            }
            Some(Token::Word(w)) if METRICS_FUNCTIONS.contains(&w.as_str()) => Err(metrics(self)),
            _ => Err(self.error(
                &format!("{} where a spanset belongs", self.describe()),
                Some("a spanset is a condition in braces, as in { span.http.status_code = 500 }"),
            )),
        }
    }

    /// `{ }` or `{ field }`.
    fn braces(&mut self) -> Result<Option<Field>, ParseError> {
        self.expect(Token::OpenBrace, "`{`")?;
        if self.peek() == Some(&Token::CloseBrace) {
            self.bump();
            return Ok(None);
        }
        let field = self.field(0)?;
        match self.peek() {
            Some(Token::CloseBrace) => {
                self.bump();
                Ok(Some(field))
            }
            Some(Token::Arithmetic(_)) => Err(arithmetic(self)),
            _ => Err(self.error(
                &format!("{} inside braces", self.describe()),
                Some("conditions are joined with && or ||, and the braces closed with }"),
            )),
        }
    }

    fn stage(&mut self) -> Result<Stage, ParseError> {
        if self.peek() == Some(&Token::OpenBrace) {
            return Ok(Stage::Filter(self.braces()?));
        }
        let Some(Token::Word(name)) = self.peek().cloned() else {
            return Err(self.error(
                &format!("{} after `|`", self.describe()),
                Some("a stage is { … }, count(), avg|min|max|sum(field) with a comparison, select(…), by(…) or coalesce()"),
            ));
        };
        if METRICS_FUNCTIONS.contains(&name.as_str()) {
            return Err(metrics(self));
        }
        let start = self.at();
        self.bump();
        self.expect(Token::OpenParen, &format!("the `(` after {name}"))?;
        let stage = match name.as_str() {
            "select" => {
                let mut fields = vec![self.field(0)?];
                while self.peek() == Some(&Token::Comma) {
                    self.bump();
                    fields.push(self.field(0)?);
                }
                Stage::Select(fields)
            }
            "by" => Stage::By(self.field(0)?),
            "coalesce" => Stage::Coalesce,
            function => match Aggregate::from_name(function) {
                Some(function) => {
                    let of = match (function, self.peek()) {
                        (Aggregate::Count, _) => None,
                        (_, Some(Token::CloseParen)) => {
                            return Err(self.error(
                                &format!("{}() without a field", function.name()),
                                Some("aggregate a field, as in avg(duration)"),
                            ));
                        }
                        _ => Some(self.field(0)?),
                    };
                    self.expect(Token::CloseParen, "`)`")?;
                    let op = comparison(self.peek()).ok_or_else(|| {
                        self.error(
                            &format!("{} after {}()", self.describe(), function.name()),
                            Some("compare the aggregate, as in count() > 2"),
                        )
                    })?;
                    self.bump();
                    let value = self.static_value()?;
                    return Ok(Stage::Aggregate { function, of, op, value });
                }
                None => {
                    return Err(ParseError::new(
                        start,
                        &format!("an unknown function `{name}`"),
                        Some(
                            "spanblame's TraceQL has count, avg, min, max, sum, select, by and coalesce",
                        ),
                    ));
                }
            },
        };
        self.expect(Token::CloseParen, "`)`")?;
        Ok(stage)
    }

    fn static_value(&mut self) -> Result<Static, ParseError> {
        let at = self.at();
        match self.field_operand()? {
            Field::Static(value) => Ok(value),
            _ => Err(ParseError::new(
                at,
                "a field where a value belongs",
                Some("compare with a number or a duration"),
            )),
        }
    }

    fn field(&mut self, min_precedence: u8) -> Result<Field, ParseError> {
        self.deeper()?;
        let mut left = self.field_unary()?;
        loop {
            let op = match self.peek() {
                Some(Token::AndAnd) => BinaryOp::And,
                Some(Token::OrOr) => BinaryOp::Or,
                other => match comparison(other) {
                    Some(op) => op,
                    None => break,
                },
            };
            let precedence = if op.is_comparison() { 2 } else { 1 };
            if precedence < min_precedence {
                break;
            }
            let at = self.at();
            self.bump();
            let right = self.field(precedence + 1)?;
            if op.is_comparison() && comparison(self.peek()).is_some() {
                return Err(self.error(
                    "a second comparison in a row",
                    Some("comparisons do not chain: join them with &&, as in .a > 1 && .a < 5"),
                ));
            }
            if matches!(op, BinaryOp::Match | BinaryOp::NotMatch) {
                match &right {
                    Field::Static(Static::Str(pattern)) => {
                        if let Err(e) = regex::Regex::new(pattern) {
                            return Err(ParseError::new(
                                at,
                                &format!("a regular expression that does not compile ({e})"),
                                None,
                            ));
                        }
                    }
                    _ => {
                        return Err(ParseError::new(
                            at,
                            &format!(
                                "`{}` with something other than a string on its right",
                                op.symbol()
                            ),
                            Some(
                                "write the regular expression as a string, as in name =~ \"GET .*\"",
                            ),
                        ));
                    }
                }
            }
            left = Field::Binary(Box::new(left), op, Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn field_unary(&mut self) -> Result<Field, ParseError> {
        if self.peek() == Some(&Token::Not) {
            self.bump();
            self.deeper()?;
            let inner = self.field_unary()?;
            self.depth -= 1;
            return Ok(Field::Not(Box::new(inner)));
        }
        self.field_operand()
    }

    fn field_operand(&mut self) -> Result<Field, ParseError> {
        let at = self.at();
        let Some(token) = self.bump() else {
            self.next -= 1;
            return Err(self.error(
                "the end of the query where a field or value belongs",
                Some("close the condition, as in { duration > 1s }"),
            ));
        };
        Ok(match token {
            Token::OpenParen => {
                let inner = self.field(0)?;
                self.expect(Token::CloseParen, "the `)` closing this group")?;
                inner
            }
            Token::Str(s) => Field::Static(Static::Str(s)),
            Token::Int(n) => Field::Static(Static::Int(n)),
            Token::Float(x) => Field::Static(Static::Float(x)),
            Token::Duration(nanos) => Field::Static(Static::Duration(nanos)),
            Token::QuotedAttribute(scope, name) => {
                let scope = match scope.as_str() {
                    "" => AttributeScope::Any,
                    "span" => AttributeScope::Span,
                    "resource" => AttributeScope::Resource,
                    other => return Err(unsupported_scope(at, other)),
                };
                Field::Attribute(Attribute { scope, name })
            }
            Token::Word(word) => {
                if self.peek() == Some(&Token::OpenParen) {
                    self.next -= 1;
                    return Err(if METRICS_FUNCTIONS.contains(&word.as_str()) {
                        metrics(self)
                    } else {
                        ParseError::new(
                            at,
                            &format!("a function call `{word}(…)` inside a condition"),
                            Some("functions go after a pipe, as in { } | count() > 2"),
                        )
                    });
                }
                word_field(at, &word)?
            }
            Token::Arithmetic(_) => {
                self.next -= 1;
                return Err(arithmetic(self));
            }
            _ => {
                self.next -= 1;
                return Err(self.error(
                    &format!("{} where a field or value belongs", self.describe()),
                    Some("a condition compares a field with a value, as in span.http.method = \"GET\""),
                ));
            }
        })
    }
}

fn spanset_precedence(op: SpansetOp) -> u8 {
    match op {
        SpansetOp::And | SpansetOp::Or => 1,
        _ => 2,
    }
}

fn comparison(token: Option<&Token>) -> Option<BinaryOp> {
    Some(match token? {
        Token::Eq => BinaryOp::Eq,
        Token::Ne => BinaryOp::Ne,
        Token::Gt => BinaryOp::Gt,
        Token::Ge => BinaryOp::Ge,
        Token::Lt => BinaryOp::Lt,
        Token::Le => BinaryOp::Le,
        Token::Match => BinaryOp::Match,
        Token::NotMatch => BinaryOp::NotMatch,
        _ => return None,
    })
}

fn word_field(at: usize, word: &str) -> Result<Field, ParseError> {
    use model::{SpanKind, StatusCode};
    let value = |v| Ok(Field::Static(v));
    match word {
        "true" => return value(Static::Bool(true)),
        "false" => return value(Static::Bool(false)),
        "nil" => return value(Static::Nil),
        "error" => return value(Static::Status(StatusCode::Error)),
        "ok" => return value(Static::Status(StatusCode::Ok)),
        "unset" => return value(Static::Status(StatusCode::Unset)),
        "unspecified" => return value(Static::Kind(SpanKind::Unspecified)),
        "internal" => return value(Static::Kind(SpanKind::Internal)),
        "server" => return value(Static::Kind(SpanKind::Server)),
        "client" => return value(Static::Kind(SpanKind::Client)),
        "producer" => return value(Static::Kind(SpanKind::Producer)),
        "consumer" => return value(Static::Kind(SpanKind::Consumer)),
        _ => {}
    }
    if let Some(intrinsic) = Intrinsic::from_name(word) {
        return Ok(Field::Intrinsic(intrinsic));
    }
    let attribute = |scope, name: &str| {
        if name.is_empty() {
            return Err(ParseError::new(
                at,
                &format!("`{word}` without an attribute name"),
                Some("name the attribute, as in span.http.method"),
            ));
        }
        Ok(Field::Attribute(Attribute { scope, name: name.to_owned() }))
    };
    if let Some(name) = word.strip_prefix("span.") {
        return attribute(AttributeScope::Span, name);
    }
    if let Some(name) = word.strip_prefix("resource.") {
        return attribute(AttributeScope::Resource, name);
    }
    if let Some(name) = word.strip_prefix('.') {
        return attribute(AttributeScope::Any, name);
    }
    if word.starts_with("change.") || word.starts_with("deploy.") {
        return CHANGE_FIELDS
            .iter()
            .find(|(n, _)| *n == word)
            .map(|(_, f)| Field::Change(*f))
            .ok_or_else(|| {
                let names: Vec<&str> = CHANGE_FIELDS.iter().map(|(n, _)| *n).collect();
                ParseError::new(
                    at,
                    &format!("an unknown spanblame field `{word}`"),
                    Some(&format!("spanblame's fields are {}", names.join(", "))),
                )
            });
    }
    if let Some((scope, _)) = word.split_once([':', '.']) {
        return Err(match scope {
            "span" | "trace" => ParseError::new(
                at,
                &format!("an unknown intrinsic `{word}`"),
                Some(&intrinsics_hint()),
            ),
            other => unsupported_scope(at, other),
        });
    }
    Err(ParseError::new(
        at,
        &format!("an unknown word `{word}`"),
        Some(&format!(
            "attributes are written span.{word}, resource.{word} or .{word}; {}",
            intrinsics_hint()
        )),
    ))
}

fn intrinsics_hint() -> String {
    let names: Vec<&str> = crate::ast::INTRINSICS.iter().map(|(n, _)| *n).collect();
    format!("intrinsics are {}", names.join(", "))
}

fn unsupported_scope(at: usize, scope: &str) -> ParseError {
    match scope {
        "event" | "link" | "instrumentation" => ParseError::new(
            at,
            &format!("the `{scope}` scope, which spanblame's TraceQL does not support"),
            Some("query span and resource attributes (span.…, resource.…, .…)"),
        ),
        other => ParseError::new(
            at,
            &format!("an unknown scope `{other}`"),
            Some("scopes are span., resource., . (either), change. and deploy."),
        ),
    }
}

fn metrics(parser: &Parser<'_>) -> ParseError {
    parser.error(
        "a TraceQL metrics query, which spanblame does not support",
        Some("search spans instead (as in { status = error }); spanblame's latency and error numbers are on /metrics/spans and the service pages"),
    )
}

fn arithmetic(parser: &Parser<'_>) -> ParseError {
    parser.error(
        "arithmetic, which spanblame's TraceQL does not support",
        Some("compare a field with a literal value, as in duration > 1s"),
    )
}
