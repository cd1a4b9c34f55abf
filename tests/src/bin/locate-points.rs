//! `locate-points`: files points into the bundled wards, for `scripts/geotag-agreement.py` (issue #6's agreement
//! check against an independent reference).
//!
//! Reads `lon,lat` lines on stdin and writes `lon,lat,code` lines on stdout, in the same order, with `lon` and `lat`
//! echoed exactly as read (so the caller can join on them) and an empty code for a point outside every ward. It uses
//! `Boundaries::bundled()` and `Boundaries::locate`, the server's own code path.

use std::io::{BufRead, BufWriter, Write};

use anyhow::Context;
use grapevine_server::geo::boundaries::Boundaries;

fn main() -> anyhow::Result<()> {
    let boundaries = Boundaries::bundled();
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (line_idx, line) in stdin.lines().enumerate() {
        let line = line.context("reading stdin")?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (lon_text, lat_text) =
            line.split_once(',').with_context(|| format!("line {}: expected lon,lat", line_idx + 1))?;
        let lon: f64 = lon_text.trim().parse().with_context(|| format!("line {}: bad longitude", line_idx + 1))?;
        let lat: f64 = lat_text.trim().parse().with_context(|| format!("line {}: bad latitude", line_idx + 1))?;
        let code = boundaries.locate(lon, lat).map_or("", |area| area.code.as_str());
        writeln!(out, "{},{},{code}", lon_text.trim(), lat_text.trim()).context("writing stdout")?;
    }
    out.flush().context("writing stdout")?;
    Ok(())
}
