//! A parsed TraceQL query as values, and its canonical text: `Display` prints what the parser
//! reads back to an equal query (parentheses only where precedence needs them).

use std::fmt;

/// A whole query: a spanset expression and the stages piped after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub first: SpansetExpr,
    pub stages: Vec<Stage>,
}

/// An expression whose value, per trace, is a set of that trace's spans.
#[derive(Debug, Clone, PartialEq)]
pub enum SpansetExpr {
    /// `{ condition }`; `{ }` (no condition) selects every span.
    Filter(Option<Field>),
    Binary(Box<SpansetExpr>, SpansetOp, Box<SpansetExpr>),
    /// A parenthesised pipeline with at least one stage: `({ } | count() > 2)`.
    Pipeline(Box<Pipeline>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpansetOp {
    /// `&&`: both sides have spans; their union.
    And,
    /// `||`: the union.
    Or,
    /// `>`: right-hand spans whose parent is a left-hand span.
    Child,
    /// `>>`: right-hand spans with a left-hand ancestor.
    Descendant,
    /// `<`: right-hand spans that are the parent of a left-hand span.
    Parent,
    /// `<<`: right-hand spans that are an ancestor of a left-hand span.
    Ancestor,
    /// `~`: right-hand spans that share their parent with a (different) left-hand span.
    Sibling,
}

impl SpansetOp {
    pub fn symbol(self) -> &'static str {
        match self {
            SpansetOp::And => "&&",
            SpansetOp::Or => "||",
            SpansetOp::Child => ">",
            SpansetOp::Descendant => ">>",
            SpansetOp::Parent => "<",
            SpansetOp::Ancestor => "<<",
            SpansetOp::Sibling => "~",
        }
    }

    /// `&&` and `||` bind alike (left to right), the structural operators tighter.
    fn precedence(self) -> u8 {
        match self {
            SpansetOp::And | SpansetOp::Or => 1,
            _ => 2,
        }
    }
}

/// One stage after a `|`.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `| { condition }`: keeps the spans of each spanset that match.
    Filter(Option<Field>),
    /// `| count() > 2`, `| avg(duration) >= 1s`: keeps the spansets whose aggregate compares so.
    Aggregate { function: Aggregate, of: Option<Field>, op: BinaryOp, value: Static },
    /// `| select(span.a, resource.b)`: shows these fields on the result spans.
    Select(Vec<Field>),
    /// `| by(resource.service.name)`: splits each spanset by the field's value.
    By(Field),
    /// `| coalesce()`: merges a trace's spansets into one.
    Coalesce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Avg,
    Min,
    Max,
    Sum,
}

impl Aggregate {
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Sum => "sum",
        }
    }

    pub fn from_name(name: &str) -> Option<Aggregate> {
        Some(match name {
            "count" => Aggregate::Count,
            "avg" => Aggregate::Avg,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "sum" => Aggregate::Sum,
            _ => return None,
        })
    }
}

/// An expression over one span: a condition, or a value to compare, select or group by.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Static(Static),
    Intrinsic(Intrinsic),
    Attribute(Attribute),
    /// spanblame's own fields: the change a span runs and its deploy.
    Change(ChangeField),
    Binary(Box<Field>, BinaryOp, Box<Field>),
    Not(Box<Field>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    And,
    Or,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    /// `=~`: the whole text matches the regular expression.
    Match,
    /// `!~`: the whole text does not match it.
    NotMatch,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "!=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Match => "=~",
            BinaryOp::NotMatch => "!~",
        }
    }

    pub fn is_comparison(self) -> bool {
        !matches!(self, BinaryOp::And | BinaryOp::Or)
    }

    fn precedence(self) -> u8 {
        if self.is_comparison() { 2 } else { 1 }
    }
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Static {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// `500ms`, `1.5s`, in nanoseconds.
    Duration(u64),
    Status(model::StatusCode),
    Kind(model::SpanKind),
    Nil,
}

/// A span's or its trace's built-in fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intrinsic {
    Name,
    Status,
    StatusMessage,
    Kind,
    Duration,
    SpanId,
    ParentId,
    RootName,
    RootServiceName,
    TraceDuration,
    TraceId,
}

/// Intrinsics by their unscoped and scoped names (both read back to the same intrinsic;
/// `Display` writes the first).
pub const INTRINSICS: &[(&str, Intrinsic)] = &[
    ("name", Intrinsic::Name),
    ("status", Intrinsic::Status),
    ("statusMessage", Intrinsic::StatusMessage),
    ("kind", Intrinsic::Kind),
    ("duration", Intrinsic::Duration),
    ("span:id", Intrinsic::SpanId),
    ("span:parentID", Intrinsic::ParentId),
    ("rootName", Intrinsic::RootName),
    ("rootServiceName", Intrinsic::RootServiceName),
    ("traceDuration", Intrinsic::TraceDuration),
    ("trace:id", Intrinsic::TraceId),
    ("span:name", Intrinsic::Name),
    ("span:status", Intrinsic::Status),
    ("span:statusMessage", Intrinsic::StatusMessage),
    ("span:kind", Intrinsic::Kind),
    ("span:duration", Intrinsic::Duration),
    ("trace:rootName", Intrinsic::RootName),
    ("trace:rootService", Intrinsic::RootServiceName),
    ("trace:duration", Intrinsic::TraceDuration),
];

impl Intrinsic {
    pub fn name(self) -> &'static str {
        INTRINSICS
            .iter()
            .find(|(_, i)| *i == self)
            .map(|(n, _)| *n)
            .expect("every intrinsic is listed")
    }

    pub fn from_name(name: &str) -> Option<Intrinsic> {
        INTRINSICS.iter().find(|(n, _)| *n == name).map(|(_, i)| *i)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeScope {
    /// `span.x`: the span's attribute.
    Span,
    /// `resource.x`: its resource's.
    Resource,
    /// `.x`: the span's, else its resource's.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub scope: AttributeScope,
    pub name: String,
}

/// spanblame's extension to TraceQL: what it knows about the code a span runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeField {
    /// `change.commit`: the commit the span's version was built from.
    Commit,
    /// `change.author`: that commit's author.
    Author,
    /// `change.review`: its code review (`D123`, `PR #45`, `MR !7`).
    Review,
    /// `change.blame.commit`: the last commit that changed the code the span runs.
    BlameCommit,
    /// `change.blame.author`: that commit's author.
    BlameAuthor,
    /// `deploy.id`: the deploy that brought the span's version.
    DeployId,
}

pub const CHANGE_FIELDS: &[(&str, ChangeField)] = &[
    ("change.commit", ChangeField::Commit),
    ("change.author", ChangeField::Author),
    ("change.review", ChangeField::Review),
    ("change.blame.commit", ChangeField::BlameCommit),
    ("change.blame.author", ChangeField::BlameAuthor),
    ("deploy.id", ChangeField::DeployId),
];

impl ChangeField {
    pub fn name(self) -> &'static str {
        CHANGE_FIELDS.iter().find(|(_, f)| *f == self).map(|(n, _)| *n).expect("listed")
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.first)?;
        for stage in &self.stages {
            write!(f, " | {stage}")?;
        }
        Ok(())
    }
}

impl fmt::Display for SpansetExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpansetExpr::Filter(None) => f.write_str("{ }"),
            SpansetExpr::Filter(Some(field)) => write!(f, "{{ {field} }}"),
            SpansetExpr::Pipeline(pipeline) => write!(f, "({pipeline})"),
            SpansetExpr::Binary(left, op, right) => {
                let tighter = |e: &SpansetExpr, right_side: bool| match e {
                    SpansetExpr::Binary(_, inner, _) => {
                        inner.precedence() < op.precedence()
                            || (right_side && inner.precedence() == op.precedence())
                    }
                    _ => false,
                };
                write_side(f, left, tighter(left, false))?;
                write!(f, " {} ", op.symbol())?;
                write_side(f, right, tighter(right, true))
            }
        }
    }
}

fn write_side(f: &mut fmt::Formatter<'_>, side: &dyn fmt::Display, parens: bool) -> fmt::Result {
    if parens { write!(f, "({side})") } else { write!(f, "{side}") }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Filter(None) => f.write_str("{ }"),
            Stage::Filter(Some(field)) => write!(f, "{{ {field} }}"),
            Stage::Aggregate { function, of, op, value } => {
                write!(f, "{}(", function.name())?;
                if let Some(of) = of {
                    write!(f, "{of}")?;
                }
                write!(f, ") {} {value}", op.symbol())
            }
            Stage::Select(fields) => {
                let fields: Vec<String> = fields.iter().map(ToString::to_string).collect();
                write!(f, "select({})", fields.join(", "))
            }
            Stage::By(field) => write!(f, "by({field})"),
            Stage::Coalesce => f.write_str("coalesce()"),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Static(value) => write!(f, "{value}"),
            Field::Intrinsic(intrinsic) => f.write_str(intrinsic.name()),
            Field::Attribute(attribute) => write!(f, "{attribute}"),
            Field::Change(field) => f.write_str(field.name()),
            Field::Not(inner) => match **inner {
                Field::Binary(..) => write!(f, "!({inner})"),
                _ => write!(f, "!{inner}"),
            },
            Field::Binary(left, op, right) => {
                // Comparisons do not chain: a comparison beside another is parenthesised.
                let parens = |e: &Field, right_side: bool| match e {
                    Field::Binary(_, inner, _) => {
                        inner.precedence() < op.precedence()
                            || (inner.precedence() == op.precedence()
                                && (right_side || op.is_comparison()))
                    }
                    _ => false,
                };
                write_side(f, left, parens(left, false))?;
                write!(f, " {} ", op.symbol())?;
                write_side(f, right, parens(right, true))
            }
        }
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.scope {
            AttributeScope::Span => "span",
            AttributeScope::Resource => "resource",
            AttributeScope::Any => "",
        };
        if !self.name.is_empty() && self.name.chars().all(crate::lex::is_attribute_char) {
            write!(f, "{scope}.{}", self.name)
        } else {
            write!(f, "{scope}.")?;
            write_string(f, &self.name)
        }
    }
}

impl fmt::Display for Static {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Static::Str(s) => write_string(f, s),
            Static::Int(n) => write!(f, "{n}"),
            // `{:?}` keeps a decimal point (`1.0`), so the text reads back as a float.
            Static::Float(x) => write!(f, "{x:?}"),
            Static::Bool(b) => write!(f, "{b}"),
            Static::Duration(nanos) => f.write_str(&duration_text(*nanos)),
            Static::Status(status) => f.write_str(status.as_str()),
            Static::Kind(kind) => f.write_str(kind.as_str()),
            Static::Nil => f.write_str("nil"),
        }
    }
}

fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// A duration in the largest unit that divides it: `1500ms`, `2s`, `90m`.
pub fn duration_text(nanos: u64) -> String {
    const UNITS: &[(&str, u64)] = &[
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ];
    UNITS
        .iter()
        .find(|(_, size)| nanos != 0 && nanos.is_multiple_of(*size))
        .map(|(unit, size)| format!("{}{unit}", nanos / size))
        .unwrap_or_else(|| format!("{nanos}ns"))
}
