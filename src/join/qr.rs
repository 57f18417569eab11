//! Join links as QR codes, for print: PNG, SVG, or drawn on a terminal.
//! Error correction level M (15% of the code may be damaged or covered).

use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode};

/// Pixels per module in a PNG: a link's 33-module code is 410 px wide with
/// its quiet zone, sharp at 3.5 cm when printed at 300 dpi.
const PNG_SCALE: usize = 10;
/// The quiet zone around the code, in modules (the standard's minimum).
const QUIET: usize = 4;

/// Why a link could not be drawn.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QrError {
    /// The link does not fit in a QR code.
    #[error("cannot draw a QR code of the link: {0}")]
    Draw(#[source] qrcode::types::QrError),
    /// The image would be wider than a PNG may be.
    #[error("the QR code is too large")]
    TooLarge(#[source] std::num::TryFromIntError),
    /// The PNG encoder failed.
    #[error("cannot write the PNG: {0}")]
    Png(#[source] png::EncodingError),
}

fn code(url: &str) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(url.as_bytes(), EcLevel::M).map_err(QrError::Draw)
}

/// The link as an SVG image.
pub(crate) fn svg(url: &str) -> Result<String, QrError> {
    Ok(code(url)?
        .render::<svg::Color<'_>>()
        .min_dimensions(300, 300)
        .quiet_zone(true)
        .build())
}

/// The link drawn with half blocks, for a terminal with a dark background
/// (its modules drawn in the background colour, the rest in the text's).
pub(crate) fn terminal(url: &str) -> Result<String, QrError> {
    let mut text = code(url)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    text.push('\n');
    Ok(text)
}

/// The link as a PNG image (8-bit grey).
pub(crate) fn png(url: &str) -> Result<Vec<u8>, QrError> {
    let code = code(url)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * PNG_SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (x, y) = (
            (i % modules + QUIET) * PNG_SCALE,
            (i / modules + QUIET) * PNG_SCALE,
        );
        for row in y..y + PNG_SCALE {
            pixels[row * side + x..row * side + x + PNG_SCALE].fill(0);
        }
    }
    let side = u32::try_from(side).map_err(QrError::TooLarge)?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(QrError::Png)?;
    writer.write_image_data(&pixels).map_err(QrError::Png)?;
    writer.finish().map_err(QrError::Png)?;
    Ok(out)
}
