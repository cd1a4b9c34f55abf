//! A phone as a process, so tests can kill it with SIGKILL at any moment (issue #4's crash safety):
//!
//! phone-under-test capture DIR N      captures up to N insights, printing `captured ID` as each capture returns
//! phone-under-test sync DIR URL TOKEN syncs once, printing `synced SENT` when done
//!
//! It is the SDK's own code path: `Store::open`, `Store::capture`, `grapevine_client_sdk::sync`.

use std::io::Write;

use grapevine_client_sdk::{Channel, Draft, Location, Store};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut stdout = std::io::stdout();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["capture", dir, n] => {
            let store = Store::open(dir).await?;
            for i in 0..n.parse::<usize>()? {
                let draft = Draft {
                    category: "asb".into(),
                    text: format!("Insight number {i} from a phone that may die at any moment"),
                    feeling_safe: Some(3),
                    location: Location::Gps { lat: 53.01869, lon: -2.16979, accuracy_m: 10.0 },
                    channel: Channel::Pupil,
                    captured_at: None,
                    campaign: None,
                };
                let id = store.capture(draft).await?;
                writeln!(stdout, "captured {id}")?;
                stdout.flush()?;
            }
        }
        ["sync", dir, url, token] => {
            let store = Store::open(dir).await?;
            let report = grapevine_client_sdk::sync(&store, url, token).await?;
            writeln!(stdout, "synced {}", report.sent)?;
        }
        _ => anyhow::bail!("usage: phone-under-test capture DIR N | sync DIR URL TOKEN"),
    }
    Ok(())
}
