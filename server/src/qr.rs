//! QR codes for printed invitation cards, as SVG (for print) and PNG (for everything else).

use std::path::{Path, PathBuf};

use anyhow::Context;
use qrcode::QrCode;

/// Pixels per QR module in the PNG.
const PNG_MODULE_PIXELS: usize = 8;

/// Light modules around the code, as the QR standard asks.
const QUIET_ZONE_MODULES: usize = 4;

/// Writes `content` as a QR code to `DIR/STEM.svg` and `DIR/STEM.png` (creating `dir`); returns both paths.
///
/// # Errors
/// The content does not fit a QR code, or a file cannot be written.
pub fn write_qr(content: &str, dir: &Path, stem: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let code = QrCode::new(content.as_bytes()).context("encoding the QR code")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let svg_path = dir.join(format!("{stem}.svg"));
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(256, 256).build();
    std::fs::write(&svg_path, svg).with_context(|| format!("writing {}", svg_path.display()))?;
    let png_path = dir.join(format!("{stem}.png"));
    std::fs::write(&png_path, png_bytes(&code)?).with_context(|| format!("writing {}", png_path.display()))?;
    Ok((svg_path, png_path))
}

/// The code as an 8-bit greyscale PNG: black modules on white, with the quiet zone.
fn png_bytes(code: &QrCode) -> anyhow::Result<Vec<u8>> {
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE_MODULES) * PNG_MODULE_PIXELS;
    let mut pixels = vec![0xFF_u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (module_x, module_y) = (index % modules + QUIET_ZONE_MODULES, index / modules + QUIET_ZONE_MODULES);
        for y in module_y * PNG_MODULE_PIXELS..(module_y + 1) * PNG_MODULE_PIXELS {
            let row = y * side;
            pixels[row + module_x * PNG_MODULE_PIXELS..row + (module_x + 1) * PNG_MODULE_PIXELS].fill(0);
        }
    }
    let mut bytes = Vec::new();
    let side_u32 = u32::try_from(side)?;
    let mut encoder = png::Encoder::new(&mut bytes, side_u32, side_u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().context("writing the PNG header")?;
    writer.write_image_data(&pixels).context("writing the PNG image")?;
    writer.finish().context("finishing the PNG")?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_are_written_and_the_png_has_dark_modules_inside_a_white_margin() {
        let dir = tempfile::tempdir().unwrap();
        let (svg, png_path) = write_qr("grapevine://enrol?code=HNLY-7K4Q-PX", dir.path(), "card").unwrap();
        assert!(std::fs::read_to_string(svg).unwrap().starts_with("<?xml"));
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png_path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!(info.width, info.height);
        let side = info.width as usize;
        assert!(pixels[..side * QUIET_ZONE_MODULES * PNG_MODULE_PIXELS].iter().all(|&p| p == 0xFF), "quiet zone");
        // The top-left finder pattern starts right after the quiet zone.
        let corner = QUIET_ZONE_MODULES * PNG_MODULE_PIXELS;
        assert_eq!(pixels[corner * side + corner], 0);
    }
}
