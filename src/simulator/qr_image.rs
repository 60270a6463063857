//! Renders the simulator's QR images: a real QR code of the ticket's URL, as a greyscale
//! JPEG like WeChat's. Each module is exactly one 8×8 JPEG block, so compression never
//! smears a module edge and any decoder reads the code back.

use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module; 8 matches the JPEG block size.
const SCALE: usize = 8;
/// The quiet zone the QR standard asks for, in modules.
const QUIET_ZONE: usize = 4;

/// Why an image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The text does not fit in a QR code.
    #[error("cannot encode QR code: {0}")]
    Qr(#[from] qrcode::types::QrError),
    /// The JPEG encoder failed.
    #[error("cannot encode JPEG: {0}")]
    Jpeg(#[from] jpeg_encoder::EncodingError),
}

/// A JPEG of a QR code that encodes `text`.
pub fn render_jpeg(text: &str) -> Result<Vec<u8>, RenderError> {
    let code = QrCode::with_error_correction_level(text, EcLevel::M)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (index % modules + QUIET_ZONE, index / modules + QUIET_ZONE);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut jpeg = Vec::new();
    let side = u16::try_from(side).expect("a QR code is at most 177 modules");
    jpeg_encoder::Encoder::new(&mut jpeg, 90).encode(
        &pixels,
        side,
        side,
        jpeg_encoder::ColorType::Luma,
    )?;
    Ok(jpeg)
}
