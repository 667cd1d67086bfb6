//! The report's figures as SVG, drawn with plotters (text as SVG `<text>`: no fonts needed).
//! Every point is a mean over seeds with its 95% interval as an error bar.

use plotters::prelude::*;

use super::claims::Figure;
use super::stats::Interval;

const SIZE: (u32, u32) = (720, 440);

/// The figure as an SVG document.
pub fn svg(figure: &Figure) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        match figure {
            Figure::Scatter {
                title,
                x_label,
                y_label,
                points,
            } => scatter(&root, title, x_label, y_label, points),
            Figure::Curves {
                title,
                x_label,
                y_label,
                series,
                reference,
            } => curves(&root, title, x_label, y_label, series, reference.as_ref()),
            Figure::Bars {
                title,
                y_label,
                bars,
            } => bar_chart(&root, title, y_label, bars),
        }
        .map_err(|e| format!("drawing the figure: {e}"))?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type Drawn = Result<(), Box<dyn std::error::Error>>;
type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A chart with the report's caption, margins and label areas over `xs` × `ys`.
fn frame<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
    xs: std::ops::Range<f64>,
    ys: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>, Box<dyn std::error::Error>> {
    Ok(ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xs, ys)?)
}

/// The interval's ends, or the mean twice when it is unbounded (one seed).
fn ends(i: &Interval) -> (f64, f64) {
    if i.bounded() {
        (i.lo, i.hi)
    } else {
        (i.mean, i.mean)
    }
}

/// A padded range covering `values` (never empty).
fn range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    (lo - pad)..(hi + pad)
}

fn scatter(
    root: &Area<'_>,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(String, Interval, Interval)],
) -> Drawn {
    let xs = range(points.iter().flat_map(|(_, x, _)| [ends(x).0, ends(x).1]));
    let ys = range(points.iter().flat_map(|(_, _, y)| [ends(y).0, ends(y).1]));
    let mut chart = frame(root, title, xs, ys)?;
    chart
        .configure_mesh()
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(WHITE)
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()?;
    for (i, (label, x, y)) in points.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let (xlo, xhi) = ends(x);
        let (ylo, yhi) = ends(y);
        chart.draw_series([ErrorBar::new_vertical(
            x.mean,
            ylo,
            y.mean,
            yhi,
            color.stroke_width(2),
            8,
        )])?;
        chart.draw_series([ErrorBar::new_horizontal(
            y.mean,
            xlo,
            x.mean,
            xhi,
            color.stroke_width(2),
            8,
        )])?;
        chart
            .draw_series([Circle::new((x.mean, y.mean), 5, color.filled())])?
            .label(label.as_str())
            .legend(move |(px, py)| Circle::new((px + 8, py), 5, color.filled()));
    }
    legend(&mut chart)
}

fn curves(
    root: &Area<'_>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, Interval)>)],
    reference: Option<&(String, f64)>,
) -> Drawn {
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let xs = range(all().map(|(x, _)| *x));
    let ys = range(
        all()
            .flat_map(|(_, y)| [ends(y).0, ends(y).1])
            .chain(reference.map(|r| r.1))
            .chain([0.0]),
    );
    let (x0, x1) = (xs.start, xs.end);
    let mut chart = frame(root, title, xs, ys)?;
    chart
        .configure_mesh()
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(WHITE)
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()?;
    if let Some((label, y)) = reference {
        let style = BLACK.mix(0.5).stroke_width(1);
        chart
            .draw_series(LineSeries::new([(x0, *y), (x1, *y)], style))?
            .label(label.as_str())
            .legend(move |(px, py)| PathElement::new([(px, py), (px + 16, py)], style));
    }
    for (i, (label, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|(x, y)| (*x, y.mean)),
                color.stroke_width(2),
            ))?
            .label(label.as_str())
            .legend(move |(px, py)| {
                PathElement::new([(px, py), (px + 16, py)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|(x, y)| {
            let (lo, hi) = ends(y);
            ErrorBar::new_vertical(*x, lo, y.mean, hi, color.stroke_width(1), 6)
        }))?;
    }
    legend(&mut chart)
}

fn bar_chart(root: &Area<'_>, title: &str, y_label: &str, bars: &[(String, Interval)]) -> Drawn {
    let ys = range(
        bars.iter()
            .flat_map(|(_, y)| [ends(y).0, ends(y).1])
            .chain([0.0]),
    );
    let n = bars.len().max(1) as f64;
    let names: Vec<String> = bars.iter().map(|(l, _)| l.clone()).collect();
    let mut chart = frame(root, title, -0.5..n - 0.5, ys)?;
    chart
        .configure_mesh()
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(WHITE)
        .disable_x_mesh()
        .x_labels(bars.len().max(1))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .draw()?;
    for (i, (_, y)) in bars.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let x = i as f64;
        chart.draw_series([Rectangle::new(
            [(x - 0.3, 0.0), (x + 0.3, y.mean)],
            color.mix(0.6).filled(),
        )])?;
        let (lo, hi) = ends(y);
        chart.draw_series([ErrorBar::new_vertical(
            x,
            lo,
            y.mean,
            hi,
            BLACK.stroke_width(1),
            10,
        )])?;
    }
    Ok(())
}

fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> Drawn {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_figure_kind_draws_an_svg_with_its_labels() {
        let i = |m: f64| Interval::of(&[m - 0.1, m, m + 0.1]).unwrap();
        let figures = [
            Figure::Scatter {
                title: "trade-off".into(),
                x_label: "copies".into(),
                y_label: "FID".into(),
                points: vec![
                    ("SISS".into(), i(0.1), i(3.0)),
                    ("NegGrad".into(), i(0.0), i(9.0)),
                ],
            },
            Figure::Curves {
                title: "attack".into(),
                x_label: "step".into(),
                y_label: "rate".into(),
                series: vec![("EraseDiff".into(), vec![(0.0, i(0.2)), (100.0, i(0.4))])],
                reference: Some(("original".into(), 0.9)),
            },
            Figure::Bars {
                title: "PUL".into(),
                y_label: "%".into(),
                bars: vec![
                    ("VDU".into(), i(50.0)),
                    ("one seed".into(), Interval::of(&[3.0]).unwrap()),
                ],
            },
        ];
        for (figure, label) in figures.iter().zip(["NegGrad", "EraseDiff", "VDU"]) {
            let svg = svg(figure).unwrap();
            assert!(svg.starts_with("<svg") && svg.contains(label), "{svg}");
        }
    }
}
