//! Invitation codes: short enough to type from a printed card, random enough that guessing one is hopeless, stored
//! only as a hash. Also the validity syntax of `grapevine invite create --expires` and the enrol link a QR code
//! carries.

use std::time::Duration;

use rand::Rng;

use crate::auth::hash_token;

/// The characters a code is made of: digits and capital letters without 0/O and 1/I, which people misread. 32 of
/// them, so each character carries 5 bits.
pub const CODE_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// Characters in a code: 50 bits, shown in groups of four (`HNLY-7K4Q-PX`).
pub const CODE_LENGTH: usize = 10;

/// A new random code, grouped for people to read and type.
#[must_use]
pub fn new_code() -> String {
    let mut rng = rand::rng();
    let compact: String =
        (0..CODE_LENGTH).map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())])).collect();
    group(&compact)
}

fn group(compact: &str) -> String {
    let chars: Vec<char> = compact.chars().collect();
    chars.chunks(4).map(|chunk| chunk.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// A code as typed, reduced to the form that is hashed: upper case, without dashes or white space.
#[must_use]
pub fn normalise_code(typed: &str) -> String {
    typed.chars().filter(|c| *c != '-' && !c.is_whitespace()).flat_map(char::to_uppercase).collect()
}

/// The hash a code is stored and looked up under (SHA-256 of its normalised form, hex).
#[must_use]
pub fn hash_code(typed: &str) -> String {
    hash_token(&normalise_code(typed))
}

/// Parses a validity such as `14d`, `2w`, `12h` or `30m` (a whole number and a unit: minutes, hours, days, weeks).
///
/// # Errors
/// A sentence saying what was expected.
pub fn parse_validity(text: &str) -> Result<Duration, String> {
    let expected = || format!("'{text}' is not a validity; expected e.g. 30m, 12h, 14d or 2w");
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(expected)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| expected())?;
    let unit_secs = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(expected()),
    };
    if number == 0 {
        return Err(format!("'{text}' would expire at once; give a validity above zero"));
    }
    number.checked_mul(unit_secs).map(Duration::from_secs).ok_or_else(expected)
}

/// The link a phone's camera opens to enrol: `grapevine://enrol?server=<URL>&code=<CODE>`, the server's HTTP
/// address percent-encoded.
#[must_use]
pub fn enrol_link(server_url: &str, code: &str) -> String {
    format!("grapevine://enrol?server={}&code={}", percent_encode(server_url), percent_encode(code))
}

fn percent_encode(text: &str) -> String {
    use std::fmt::Write;
    text.bytes().fold(String::with_capacity(text.len()), |mut out, byte| {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_from_the_unambiguous_alphabet_and_differ() {
        let code = new_code();
        assert_eq!(code.len(), CODE_LENGTH + 2, "{code}");
        assert_eq!(code.matches('-').count(), 2);
        let compact = normalise_code(&code);
        assert_eq!(compact.len(), CODE_LENGTH);
        assert!(compact.bytes().all(|byte| CODE_ALPHABET.contains(&byte)), "{code}");
        assert!(!compact.contains(['0', 'O', '1', 'I']));
        assert_ne!(new_code(), new_code());
    }

    #[test]
    fn case_dashes_and_spaces_do_not_matter() {
        assert_eq!(normalise_code("hnly-7k4q-px"), "HNLY7K4QPX");
        assert_eq!(normalise_code(" HNLY 7K4Q\tPX "), "HNLY7K4QPX");
        assert_eq!(hash_code("hnly 7k4q-px"), hash_code("HNLY-7K4Q-PX"));
        assert_ne!(hash_code("HNLY-7K4Q-PX"), hash_code("HNLY-7K4Q-PY"));
    }

    #[test]
    fn validities_read_minutes_hours_days_and_weeks() {
        assert_eq!(parse_validity("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_validity("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_validity("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_validity("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["", "d", "14", "14y", "-1d", "1.5d", "0d"] {
            assert!(parse_validity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_enrol_link_encodes_the_server_address() {
        assert_eq!(
            enrol_link("https://grapevine.example.org:8443/x", "HNLY-7K4Q-PX"),
            "grapevine://enrol?server=https%3A%2F%2Fgrapevine.example.org%3A8443%2Fx&code=HNLY-7K4Q-PX"
        );
    }
}
