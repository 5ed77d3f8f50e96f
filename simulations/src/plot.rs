//! The report's plots, each as PNG and SVG: offer propagation CDF, session success over
//! time, the providers' earnings Lorenz curve (with its Gini coefficient), where the
//! money went, and each loss against its bound.
//!
//! Text needs a TrueType font: the first of [`FONT_PATHS`] that exists (Debian's
//! `fonts-dejavu-core`), or the file named by `ORIEN_SIM_FONT`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::Report;

/// Where a font is looked for, in order.
pub const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

const SIZE: (u32, u32) = (900, 560);
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREY: RGBColor = RGBColor(150, 150, 150);
const RED: RGBColor = RGBColor(214, 39, 40);

/// Why plots could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No usable font.
    #[error(
        "no TrueType font for the plots' text: install fonts-dejavu-core (apt-get install fonts-dejavu-core) or set ORIEN_SIM_FONT to a .ttf file"
    )]
    NoFont,
    /// Drawing or writing failed.
    #[error("cannot draw {file}: {message}")]
    Draw {
        /// The plot's file.
        file: PathBuf,
        /// What failed.
        message: String,
    },
}

fn font() -> Result<(), PlotError> {
    static LOADED: OnceLock<bool> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        let candidates = std::env::var_os("ORIEN_SIM_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from));
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                // Registered once per process and used until it exits.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    });
    if *loaded {
        Ok(())
    } else {
        Err(PlotError::NoFont)
    }
}

/// One of the report's plots.
#[derive(Debug, Clone, Copy)]
enum Plot {
    Propagation,
    Sessions,
    Earnings,
    Money,
    Losses,
}

impl Plot {
    const ALL: [Self; 5] = [
        Self::Propagation,
        Self::Sessions,
        Self::Earnings,
        Self::Money,
        Self::Losses,
    ];

    const fn name(self) -> &'static str {
        match self {
            Self::Propagation => "propagation",
            Self::Sessions => "sessions",
            Self::Earnings => "earnings",
            Self::Money => "money",
            Self::Losses => "losses",
        }
    }

    fn draw<DB: DrawingBackend>(
        self,
        report: &Report,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), String> {
        area.fill(&WHITE).map_err(text)?;
        match self {
            Self::Propagation => propagation(report, area),
            Self::Sessions => sessions(report, area),
            Self::Earnings => earnings(report, area),
            Self::Money => money(report, area),
            Self::Losses => losses(report, area),
        }?;
        area.present().map_err(text)
    }
}

/// Draws every plot of `report` into `dir` as `<name>.png` and `<name>.svg`; returns
/// the files written.
pub fn draw_all(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    font()?;
    let mut written = Vec::new();
    for plot in Plot::ALL {
        let png = dir.join(format!("{}.png", plot.name()));
        let svg = dir.join(format!("{}.svg", plot.name()));
        let mut pixels = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
        let drawn = plot.draw(
            report,
            &BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area(),
        );
        drawn
            .and_then(|()| write_png(&png, &pixels))
            .map_err(|message| PlotError::Draw {
                file: png.clone(),
                message,
            })?;
        plot.draw(report, &SVGBackend::new(&svg, SIZE).into_drawing_area())
            .map_err(|message| PlotError::Draw {
                file: svg.clone(),
                message,
            })?;
        written.extend([png, svg]);
    }
    Ok(written)
}

/// Encodes an RGB buffer of [`SIZE`] as a PNG file.
fn write_png(file: &Path, pixels: &[u8]) -> Result<(), String> {
    let out = std::io::BufWriter::new(std::fs::File::create(file).map_err(text)?);
    let mut encoder = png::Encoder::new(out, SIZE.0, SIZE.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(text)?;
    writer.write_image_data(pixels).map_err(text)?;
    writer.finish().map_err(text)
}

fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn propagation<DB: DrawingBackend>(
    report: &Report,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let p = &report.propagation;
    let max = p.cdf.last().map_or(1.0, |c| c.0).max(1.0) * 1.05;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Offer propagation: {} offers traced, p50 {:.0} ms, p99 {:.0} ms",
                p.traced, p.p50_ms, p.p99_ms
            ),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..max, 0.0..1.0)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc("time to reach a node, ms")
        .y_desc("share of (offer, node) pairs reached")
        .draw()
        .map_err(text)?;
    chart
        .draw_series(LineSeries::new(
            std::iter::once((0.0, 0.0)).chain(p.cdf.iter().copied()),
            BLUE.stroke_width(2),
        ))
        .map_err(text)?;
    Ok(())
}

fn sessions<DB: DrawingBackend>(
    report: &Report,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let s = &report.sessions;
    let last = s.over_time.last().map_or(1, |b| b.minute + 1).max(1);
    let providers = f64::from(report.nodes.providers.max(1));
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Sessions over time: {} of {} requests succeeded",
                s.succeeded, s.requested
            ),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..f64::from(last), 0.0..1.05)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc("simulated minute (requests by start)")
        .y_desc("share")
        .draw()
        .map_err(text)?;
    let success = s.over_time.iter().map(|b| {
        let share = if b.requested == 0 {
            0.0
        } else {
            b.succeeded as f64 / b.requested as f64
        };
        (f64::from(b.minute), share)
    });
    chart
        .draw_series(LineSeries::new(success, BLUE.stroke_width(2)))
        .map_err(text)?
        .label("requests that succeeded")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    let online = s.over_time.iter().map(|b| {
        (
            f64::from(b.minute),
            f64::from(b.providers_online) / providers,
        )
    });
    chart
        .draw_series(LineSeries::new(online, ORANGE.stroke_width(2)))
        .map_err(text)?
        .label("providers online")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], ORANGE.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(text)?;
    Ok(())
}

fn earnings<DB: DrawingBackend>(
    report: &Report,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let e = &report.earnings;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Providers' earnings: {} USDC in all, Gini {:.3}",
                e.total, e.gini
            ),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc("share of providers, poorest first")
        .y_desc("share of all earnings")
        .draw()
        .map_err(text)?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            GREY.stroke_width(1),
        ))
        .map_err(text)?
        .label("equal earnings")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREY));
    chart
        .draw_series(LineSeries::new(
            e.lorenz.iter().copied(),
            BLUE.stroke_width(2),
        ))
        .map_err(text)?
        .label("Lorenz curve")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(text)?;
    Ok(())
}

fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: String,
    y_desc: &str,
    bars: &[(String, f64)],
    limit: Option<f64>,
) -> Result<(), String> {
    let top = bars
        .iter()
        .map(|b| b.1)
        .fold(limit.unwrap_or(0.0), f64::max)
        .max(1e-9)
        * 1.15;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..bars.len().max(1) as f64, 0.0..top)
        .map_err(text)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len().max(1) * 2 + 1)
        .x_label_style(("sans-serif", 12))
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .draw()
        .map_err(text)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            Rectangle::new(
                [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, b.1)],
                BLUE.filled(),
            )
        }))
        .map_err(text)?;
    if let Some(limit) = limit {
        chart
            .draw_series(LineSeries::new(
                [(0.0, limit), (bars.len() as f64, limit)],
                RED.stroke_width(2),
            ))
            .map_err(text)?
            .label("the bound")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(text)?;
    }
    Ok(())
}

fn money<DB: DrawingBackend>(report: &Report, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
    let m = &report.money;
    let value = |s: &str| s.parse::<f64>().unwrap_or(0.0);
    let rows = [
        ("renters paid", &m.renters_paid),
        ("providers 90 %", &m.providers_earned),
        ("fee 7 %", &m.fee),
        ("reserve 3 %", &m.reserve),
        ("left in escrow", &m.escrow_left),
    ];
    let data: Vec<(String, f64)> = rows
        .iter()
        .map(|(name, v)| ((*name).to_owned(), value(v)))
        .collect();
    bars(
        area,
        format!(
            "Money: {} USDC paid, fee {} and reserve {}",
            m.renters_paid, m.fee, m.reserve
        ),
        "USDC",
        &data,
        None,
    )
}

fn losses<DB: DrawingBackend>(
    report: &Report,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let data: Vec<(String, f64)> = report
        .losses
        .iter()
        .map(|l| (l.cause.clone(), l.worst_share_of_bound))
        .collect();
    bars(
        area,
        "Worst loss in one session, as a share of its bound (see report.md: who loses)".into(),
        "worst loss / bound",
        &data,
        Some(1.0),
    )
}
