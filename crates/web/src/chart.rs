//! SVG charts drawn on the server: lines over time with clickable deploy markers, and two
//! latency distributions on one log-scaled axis. Pure functions from numbers to markup; every
//! piece of text that reaches the markup is escaped here.

use std::fmt::Write as _;

use shapes::short_number;

use crate::escape;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
/// Room above the plot for the legend, so it never covers the data.
const TOP: f64 = 28.0;
const BOTTOM: f64 = 30.0;

/// One line: a name for the legend, a CSS class for its colour, and (x, y) points.
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) class: &'static str,
    pub(crate) points: Vec<(f64, f64)>,
}

/// One distribution: its name, a CSS class, and its buckets as (lower ms, upper ms, count).
pub(crate) type Distribution = (String, &'static str, Vec<(f64, f64, u64)>);

/// A vertical marker at `x` linking to `href`, labelled `label`.
pub(crate) struct Marker {
    pub(crate) x: f64,
    pub(crate) label: String,
    pub(crate) href: String,
    pub(crate) class: &'static str,
}

/// A line chart over time: `x` is Unix seconds, `y` in `unit`.
pub(crate) fn time_chart(title: &str, unit: &str, series: &[Series], markers: &[Marker]) -> String {
    let xs =
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).chain(markers.iter().map(|m| m.x));
    let (x_min, x_max) = bounds(xs);
    let y_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0f64, f64::max);
    let y_max = nice_ceiling(y_max);
    let x_at = |x: f64| LEFT + (x - x_min) / (x_max - x_min).max(1.0) * (WIDTH - LEFT - RIGHT);
    let y_at = |y: f64| TOP + (1.0 - y / y_max) * (HEIGHT - TOP - BOTTOM);
    let mut svg = open(title);
    y_grid(&mut svg, y_max, unit);
    // Time labels: start, middle, end (UTC).
    for fraction in [0.0, 0.5, 1.0] {
        let x = x_min + (x_max - x_min) * fraction;
        let anchor = if fraction == 0.0 {
            "start"
        } else if fraction == 1.0 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            svg,
            r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            x_at(x),
            HEIGHT - 10.0,
            escape(&clock(x))
        );
    }
    for marker in markers {
        let px = x_at(marker.x);
        let _ = write!(
            svg,
            r#"<a href="{href}" class="marker {class}"><title>{label}</title><line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}"/><rect x="{:.1}" y="{TOP}" width="10" height="10"/></a>"#,
            HEIGHT - BOTTOM,
            px - 5.0,
            href = escape(&marker.href),
            class = marker.class,
            label = escape(&marker.label),
        );
    }
    for s in series {
        if s.points.is_empty() {
            continue;
        }
        let points: Vec<String> =
            s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", x_at(x), y_at(y))).collect();
        let _ = write!(
            svg,
            r#"<polyline class="line {}" points="{}"><title>{}</title></polyline>"#,
            s.class,
            points.join(" "),
            escape(&s.name)
        );
    }
    legend(&mut svg, series.iter().map(|s| (s.name.as_str(), s.class)));
    svg.push_str("</svg>");
    svg
}

/// One trace on a scatter plot: when it started (Unix seconds), how long it took, a link.
pub(crate) struct Dot {
    pub(crate) x: f64,
    pub(crate) y_ms: f64,
    pub(crate) href: String,
    pub(crate) label: String,
    pub(crate) error: bool,
}

/// Traces as dots, duration over time (as Jaeger draws a search): each dot opens its trace.
pub(crate) fn scatter_chart(title: &str, dots: &[Dot]) -> String {
    let (x_min, x_max) = bounds(dots.iter().map(|d| d.x));
    let y_max = nice_ceiling(dots.iter().map(|d| d.y_ms).fold(0.0f64, f64::max));
    let x_at = |x: f64| LEFT + (x - x_min) / (x_max - x_min).max(1.0) * (WIDTH - LEFT - RIGHT);
    let y_at = |y: f64| TOP + (1.0 - y / y_max) * (HEIGHT - TOP - BOTTOM);
    let mut svg = open(title);
    y_grid(&mut svg, y_max, " ms");
    // Seconds on the axis when the traces found span less than ten minutes.
    let label = |x: f64| {
        if x_max - x_min < 600.0 {
            jiff::Timestamp::from_second(x as i64)
                .map(|t| t.strftime("%H:%M:%S UTC").to_string())
                .unwrap_or_default()
        } else {
            clock(x)
        }
    };
    for (fraction, anchor) in [(0.0, "start"), (0.5, "middle"), (1.0, "end")] {
        let x = x_min + (x_max - x_min) * fraction;
        let _ = write!(
            svg,
            r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            x_at(x),
            HEIGHT - 10.0,
            escape(&label(x))
        );
    }
    for dot in dots {
        let _ = write!(
            svg,
            r#"<a href="{}"><circle class="dot{}" cx="{:.1}" cy="{:.1}" r="5"><title>{}</title></circle></a>"#,
            escape(&dot.href),
            if dot.error { " error" } else { "" },
            x_at(dot.x),
            y_at(dot.y_ms),
            escape(&dot.label)
        );
    }
    let _ = write!(
        svg,
        r#"<text class="axis" x="{LEFT}" y="15">duration of each trace found, by when it started (select a dot to open it)</text>"#
    );
    svg.push_str("</svg>");
    svg
}

/// Two (or more) latency distributions on one chart: for each, the percent of its spans per
/// 10% band of latency (so buckets of any width compare), drawn as a step line over a
/// log-scaled latency axis, with its p50 and p99 marked. `buckets` are (lower ms, upper ms,
/// count).
pub(crate) fn distribution_chart(title: &str, sides: &[Distribution]) -> String {
    let lows = sides.iter().flat_map(|s| s.2.iter().map(|b| b.0.max(0.001)));
    let highs = sides.iter().flat_map(|s| s.2.iter().map(|b| b.1.max(0.001)));
    let x_min = lows.fold(f64::INFINITY, f64::min);
    let x_max = highs.fold(0.0f64, f64::max);
    let mut svg = open(title);
    if !x_min.is_finite() || x_max <= x_min {
        svg.push_str(r#"<text class="axis" x="20" y="40">no spans in these windows</text></svg>"#);
        return svg;
    }
    let (lx_min, lx_max) = (x_min.log10(), x_max.log10());
    let x_at = |ms: f64| {
        LEFT + (ms.max(0.001).log10() - lx_min) / (lx_max - lx_min) * (WIDTH - LEFT - RIGHT)
    };
    // Percent of spans per 10% band of latency (density per unit of log10(ms), scaled), so
    // buckets of different widths compare and the axis reads in plain percent.
    let band = 1.1f64.log10() * 100.0;
    let densities: Vec<Vec<(f64, f64, f64)>> = sides
        .iter()
        .map(|(_, _, buckets)| {
            let total: u64 = buckets.iter().map(|b| b.2).sum();
            buckets
                .iter()
                .map(|&(lo, hi, n)| {
                    let width = (hi.max(lo * 1.0001).log10() - lo.max(0.001).log10()).max(1e-6);
                    (lo, hi, n as f64 / total.max(1) as f64 / width * band)
                })
                .collect()
        })
        .collect();
    let y_max = nice_ceiling(densities.iter().flatten().map(|d| d.2).fold(0.0f64, f64::max));
    let y_at = |d: f64| TOP + (1.0 - d / y_max) * (HEIGHT - TOP - BOTTOM);
    y_grid(&mut svg, y_max, "%");
    // Latency ticks at 1-2-5 steps, or finer when the range spans less than a decade.
    let ticks = |steps: &[f64]| -> Vec<f64> {
        let mut ticks = Vec::new();
        let mut decade = 10f64.powf(lx_min.floor());
        while decade <= x_max * 1.0001 {
            ticks
                .extend(steps.iter().map(|s| decade * s).filter(|ms| *ms >= x_min && *ms <= x_max));
            decade *= 10.0;
        }
        ticks
    };
    let mut latency_ticks = ticks(&[1.0, 2.0, 5.0]);
    if latency_ticks.len() < 4 {
        latency_ticks = ticks(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0]);
    }
    for ms in latency_ticks {
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}"/><text class="axis" x="{x:.1}" y="{:.1}" text-anchor="middle">{} ms</text>"#,
            HEIGHT - BOTTOM,
            HEIGHT - 10.0,
            short_number(ms),
            x = x_at(ms),
        );
    }
    for ((name, class, _), density) in sides.iter().zip(&densities) {
        let mut points = Vec::new();
        for &(lo, hi, d) in density {
            points.push(format!("{:.1},{:.1}", x_at(lo), y_at(d)));
            points.push(format!("{:.1},{:.1}", x_at(hi), y_at(d)));
        }
        let _ = write!(
            svg,
            r#"<polyline class="line {class}" points="{}"><title>{}</title></polyline>"#,
            points.join(" "),
            escape(name)
        );
    }
    // Each side's median and p99, as dashed lines labelled at the top of the plot.
    for (side, (_, class, buckets)) in sides.iter().enumerate() {
        for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
            let Some(ms) = quantile_ms(buckets, q) else { continue };
            let x = x_at(ms);
            let _ = write!(
                svg,
                r#"<line class="pct {class}" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}"><title>{label} {} ms</title></line><text class="axis pct-label {class}" x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                HEIGHT - BOTTOM,
                short_number(ms),
                x,
                // The two sides' labels on two rows, so they do not overwrite each other.
                TOP + 10.0 + 11.0 * side as f64,
            );
        }
    }
    let _ = write!(
        svg,
        r#"<text class="axis" x="12" y="{:.1}" text-anchor="middle" transform="rotate(-90 12 {:.1})">spans per 10% band</text>"#,
        (TOP + HEIGHT - BOTTOM) / 2.0,
        (TOP + HEIGHT - BOTTOM) / 2.0,
    );
    legend(&mut svg, sides.iter().map(|s| (s.0.as_str(), s.1)));
    svg.push_str("</svg>");
    svg
}

/// The latency at quantile `q` of a distribution's buckets (the upper edge of the bucket that
/// holds it); `None` for no spans.
fn quantile_ms(buckets: &[(f64, f64, u64)], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().map(|b| b.2).sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    buckets
        .iter()
        .find(|b| {
            seen += b.2;
            seen >= rank
        })
        .map(|b| b.1)
}

/// Five horizontal grid lines from 0 to `y_max`, labelled in `unit`.
fn y_grid(svg: &mut String, y_max: f64, unit: &str) {
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let py = TOP + (1.0 - y / y_max) * (HEIGHT - TOP - BOTTOM);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            escape(&format!("{}{unit}", short_number(y)))
        );
    }
}

fn open(title: &str) -> String {
    format!(
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = escape(title)
    )
}

fn legend<'a>(svg: &mut String, entries: impl Iterator<Item = (&'a str, &'static str)>) {
    let mut x = LEFT + 8.0;
    for (name, class) in entries {
        let _ = write!(
            svg,
            r#"<rect class="key {class}" x="{x:.1}" y="6" width="10" height="10"/><text class="axis" x="{:.1}" y="15">{}</text>"#,
            x + 14.0,
            escape(name)
        );
        x += 24.0 + 7.0 * name.chars().count() as f64;
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) =
        values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if min.is_finite() { (min, max.max(min + 1.0)) } else { (0.0, 1.0) }
}

/// The smallest 1, 2 or 5 × 10^k at or above `value` (at least 1 for an empty chart).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|v| *v >= value)
        .unwrap_or(10.0 * power)
}

fn clock(unix_secs: f64) -> String {
    jiff::Timestamp::from_second(unix_secs as i64)
        .map(|t| t.strftime("%H:%M UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(12.5), "12.5");
        assert_eq!(short_number(2.0), "2");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(1234.0), "1234");
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }

    #[test]
    fn text_in_charts_is_escaped_and_markers_link() {
        let svg = time_chart(
            "p95 <of> \"checkout\"",
            " ms",
            &[Series {
                name: "p95 & co".into(),
                class: "p95",
                points: vec![(0.0, 1.0), (60.0, 3.0)],
            }],
            &[Marker {
                x: 30.0,
                label: "deploy <1.2.0>".into(),
                href: "/deploys/8?a=1&b=2".into(),
                class: "deploy",
            }],
        );
        assert!(svg.contains("p95 &lt;of&gt; &quot;checkout&quot;"), "{svg}");
        assert!(svg.contains("p95 &amp; co") && svg.contains("deploy &lt;1.2.0&gt;"), "{svg}");
        assert!(svg.contains(r#"href="/deploys/8?a=1&amp;b=2""#), "{svg}");
        assert!(!svg.contains("<of>"));
    }

    #[test]
    fn an_empty_distribution_says_so() {
        let svg = distribution_chart("latency", &[("before".into(), "before", Vec::new())]);
        assert!(svg.contains("no spans"), "{svg}");
        let svg = distribution_chart(
            "latency",
            &[
                ("before".into(), "before", vec![(9.0, 10.0, 5), (10.0, 11.0, 5)]),
                ("after".into(), "after", vec![(19.0, 20.0, 10)]),
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains("10 ms"), "{svg}");
        // Each side's p50 and p99 are marked; the legend sits above the plot.
        assert_eq!(svg.matches(r#"<line class="pct "#).count(), 4, "{svg}");
        assert!(
            svg.contains("<title>p50 10 ms</title>") && svg.contains("<title>p99 20 ms</title>")
        );
        assert!(svg.contains(r#"<rect class="key before" x="64.0" y="6""#), "{svg}");
    }

    #[test]
    fn each_trace_is_a_dot_that_opens_it() {
        let dot = |x: f64, y_ms: f64, error: bool| Dot {
            x,
            y_ms,
            href: format!("/traces/{x}"),
            label: "a <trace>".into(),
            error,
        };
        let svg = scatter_chart("traces", &[dot(100.0, 12.0, false), dot(160.0, 40.0, true)]);
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        assert!(svg.contains(r#"<a href="/traces/160"><circle class="dot error""#), "{svg}");
        assert!(svg.contains("50 ms") && svg.contains("a &lt;trace&gt;"), "{svg}");
        assert!(scatter_chart("none", &[]).starts_with("<svg"));
    }

    #[test]
    fn the_share_axis_reads_in_percent_per_ten_percent_band() {
        // All spans in one bucket exactly 10% wide: 100% of them in that band.
        let svg = distribution_chart("t", &[("one".into(), "after", vec![(10.0, 11.0, 40)])]);
        assert!(svg.contains(">100%</text>") && svg.contains(">50%</text>"), "{svg}");
        assert!(svg.contains(">10 ms</text>"), "{svg}");
    }

    #[test]
    fn quantiles_are_read_off_the_buckets() {
        let buckets = [(1.0, 2.0, 50), (2.0, 4.0, 45), (4.0, 8.0, 5)];
        assert_eq!(quantile_ms(&buckets, 0.5), Some(2.0));
        assert_eq!(quantile_ms(&buckets, 0.95), Some(4.0));
        assert_eq!(quantile_ms(&buckets, 0.99), Some(8.0));
        assert_eq!(quantile_ms(&[], 0.5), None);
    }
}
