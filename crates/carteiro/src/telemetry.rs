//! Logs on standard error, as text or JSON; `RUST_LOG` picks the levels.

use tracing_subscriber::EnvFilter;

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Addresses in a log line, masked: `ana.souza@acme.example` becomes
/// `a***@acme.example` — enough to tell recipients apart by domain and
/// initial, without putting people's addresses in logs. Works on any text
/// (a server's reply names the recipient it refuses).
pub fn mask_addresses(text: &str) -> String {
    const LOCAL: &[u8] = b".!#$%&'*+/=?^_`{|}~-";
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.match_indices('@') {
        let start =
            bytes[..at].iter().rposition(|b| !(b.is_ascii_alphanumeric() || LOCAL.contains(b))).map_or(0, |p| p + 1);
        if start >= at || start < copied {
            continue;
        }
        out.push_str(&text[copied..start]);
        out.push(text[start..].chars().next().unwrap_or('*'));
        out.push_str("***");
        copied = at;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::mask_addresses;

    #[test]
    fn addresses_keep_their_initial_and_domain() {
        assert_eq!(mask_addresses("ana.souza@acme.example"), "a***@acme.example");
        assert_eq!(
            mask_addresses("550 5.1.1 <joao+x@example.com>: unknown, cc b@x.example"),
            "550 5.1.1 <j***@example.com>: unknown, cc b***@x.example"
        );
        assert_eq!(mask_addresses("no address here"), "no address here");
        assert_eq!(mask_addresses("@alone and a@"), "@alone and a***@");
    }
}
