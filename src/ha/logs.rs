//! Log lines from hosts: where each service logs, the script that reads them, and the
//! timestamps that let `hactl logs` merge every host's lines in time order.
//!
//! Where the logs are (found on the lab hosts and Debian's defaults):
//! - **keepalived**: in the lab it runs `keepalived -n -l -G -D` with stderr appended to
//!   `/var/log/keepalived.log` (the host's own /var overlay); its console lines start with a
//!   ctime stamp (`Sun Nov 22 01:31:24 2026: …`, whole seconds). On a systemd host it logs to
//!   the journal (`journalctl -u keepalived`) and `/var/log/syslog`.
//! - **nginx**: `/var/log/nginx/error.log` and `access.log` (the template's paths).
//! - **haproxy**: the template configures no `log` target and the lab runs it daemonized, so
//!   it writes nothing; `/var/log/haproxy.log` and the journal are read when they exist.
//! - **app**: the container runtime's own log (`podman logs -t` / `docker logs -t`).
//!
//! Lines without a timestamp (continuations) take the previous line's time. Stamps without a
//! zone are taken as UTC, which is what the lab and hactl-built hosts use.
//!
//! What a host prints is data, not trusted text: a log line can hold anything a client sent
//! (nginx logs request lines) in any encoding. So every line is cleaned of terminal control
//! sequences before it reaches an operator's terminal or a CI log ([`clean`]), and the stamp
//! parsers index text only where a character starts (`str::get`), never by a byte position
//! that a multi-byte character could straddle.

use std::fmt::Write as _;

use crate::onhost::sh::q;

/// The services `hactl logs` knows.
pub const SERVICES: &[&str] = &["keepalived", "nginx", "haproxy", "app"];

/// Where a service logs on a host: files, and the journal unit.
pub fn sources(service: &str) -> (&'static [&'static str], Option<&'static str>) {
    match service {
        "keepalived" => (&["/var/log/keepalived.log"], Some("keepalived")),
        "nginx" => (
            &["/var/log/nginx/error.log", "/var/log/nginx/access.log"],
            Some("nginx"),
        ),
        "haproxy" => (&["/var/log/haproxy.log"], Some("haproxy")),
        _ => (&[], None),
    }
}

/// The read-only script that prints the last `tail` lines of every source of `services`, each
/// as `HACTL\tline\tSERVICE\tSOURCE\tTEXT`. `offsets` (source → byte offset) makes it print
/// only what was appended since (for `--follow`); every file's size is reported as
/// `HACTL\tsize\tSOURCE\tBYTES`.
pub fn read_script(
    services: &[String],
    tail: usize,
    offsets: &std::collections::BTreeMap<String, u64>,
) -> String {
    let mut s = String::from("set -u\n");
    for svc in services {
        let (files, unit) = sources(svc);
        let tag = q(svc);
        for f in files {
            let path = q(f);
            let read = match offsets.get(*f) {
                Some(off) => format!("tail -c +{} {path}", off + 1),
                None => format!("tail -n {tail} {path}"),
            };
            let _ = writeln!(
                s,
                "if [ -f {path} ]; then printf 'HACTL\\tsize\\t%s\\t%s\\n' {path} \"$(stat -c %s {path})\"; {read} | awk -v s={tag} -v f={path} '{{print \"HACTL\\tline\\t\" s \"\\t\" f \"\\t\" $0}}'; fi"
            );
        }
        if let Some(unit) = unit {
            // Only when the files are not there (systemd hosts): the journal has it all.
            if offsets.is_empty() {
                let conds = files
                    .iter()
                    .map(|f| format!("[ ! -f {} ]", q(f)))
                    .collect::<Vec<_>>()
                    .join(" && ");
                let _ = writeln!(
                    s,
                    "if {conds} && command -v journalctl >/dev/null 2>&1; then journalctl -q --no-pager -o short-iso-precise -n {tail} -u {u} 2>/dev/null | awk -v s={tag} '{{print \"HACTL\\tline\\t\" s \"\\tjournal\\t\" $0}}'; fi",
                    u = q(unit)
                );
            }
        }
        if svc == "app" && offsets.is_empty() {
            let _ = writeln!(
                s,
                "for rt in podman docker; do command -v $rt >/dev/null 2>&1 || continue; for c in $($rt ps -a --format '{{{{.Names}}}}' 2>/dev/null); do $rt logs -t --tail {tail} \"$c\" 2>&1 | awk -v s=app -v f=\"$rt:$c\" '{{print \"HACTL\\tline\\t\" s \"\\t\" f \"\\t\" $0}}'; done; done"
            );
        }
    }
    s
}

/// One line read from a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub service: String,
    pub source: String,
    pub text: String,
}

/// What a read script printed: lines and file sizes.
pub fn parse(stdout: &str) -> (Vec<Line>, Vec<(String, u64)>) {
    let mut lines = Vec::new();
    let mut sizes = Vec::new();
    for f in crate::onhost::record::fields(stdout) {
        match f.as_slice() {
            ["line", svc, src, text @ ..] => lines.push(Line {
                service: clean(svc),
                source: clean(src),
                text: clean(&text.join("\t")),
            }),
            ["size", path, n] => {
                if let Ok(n) = n.trim().parse() {
                    sizes.push((path.to_string(), n));
                }
            }
            _ => {}
        }
    }
    (lines, sizes)
}

/// A remote line made safe to print: ANSI/VT escape sequences (CSI such as colours and cursor
/// moves, OSC such as window titles and hyperlinks, DCS, …) are removed whole, by the `vte`
/// parser that terminals themselves use (through `strip-ansi-escapes`), and every other
/// control character left (C0, DEL, C1 — a bare `ESC`, `\r` that would overwrite the line,
/// a bell) is removed too. Tabs stay: logs use them as separators.
pub fn clean(text: &str) -> String {
    let needs = text.chars().any(|c| c.is_control() && c != '\t');
    if !needs {
        return text.to_string();
    }
    // The parser drops tabs with the other C0 controls: clean between them.
    text.split('\t')
        .map(|part| {
            strip_ansi_escapes::strip_str(part)
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\t")
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn month(name: &str) -> Option<i64> {
    const M: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    M.iter().position(|m| *m == name).map(|i| i as i64 + 1)
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `HH:MM:SS[.frac]` → ms into the day.
fn hms(s: &str) -> Option<i64> {
    let (main, frac) = match s.split_once(['.', ',']) {
        Some((m, f)) => (m, f),
        None => (s, ""),
    };
    let mut it = main.split(':');
    let (h, m, sec) = (num(it.next()?)?, num(it.next()?)?, num(it.next()?)?);
    if it.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let ms = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        let d3 = format!("{digits:0<3}");
        num(&d3[..3])?
    };
    Some(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

/// `+0000`, `+00:00`, `Z` → offset in ms to subtract.
fn zone(s: &str) -> Option<i64> {
    if s == "Z" {
        return Some(0);
    }
    let (sign, rest) = match s.chars().next()? {
        '+' => (1, &s[1..]),
        '-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 {
        return None;
    }
    // `get`: four bytes need not be four ASCII digits (`1é1`), and a slice inside `é` panics.
    let h = num(digits.get(..2)?)?;
    let m = num(digits.get(2..)?)?;
    Some(sign * (h * 60 + m) * 60_000)
}

/// ISO 8601 `2026-11-22T01:31:24[.123][Z|+0000]` (or with a space) → Unix ms.
pub fn parse_iso(s: &str) -> Option<i64> {
    if s.len() < 19 {
        return None;
    }
    // `get`, not `[..]`: the input is a user's `--since` or a remote log line, and byte 10
    // may fall inside a multi-byte character (which `[..10]` would panic on).
    let sep = *s.as_bytes().get(10)?;
    if sep != b'T' && sep != b' ' {
        return None;
    }
    let (date, rest) = (s.get(..10)?, s.get(11..)?);
    let mut d = date.split('-');
    let (y, mo, da) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let zpos = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let t = hms(&rest[..zpos])?;
    let off = if zpos < rest.len() {
        zone(&rest[zpos..])?
    } else {
        0
    };
    Some(days_from_civil(y, mo, da) * 86_400_000 + t - off)
}

/// The time a log line was written (Unix ms) and the rest of the line, for every format the
/// sources above use; `None` when the line has no stamp.
pub fn stamp(text: &str) -> Option<(i64, &str)> {
    let words: Vec<&str> = text.splitn(6, ' ').collect();
    // keepalived console: `Sun Nov 22 01:31:24 2026: msg` (day may be space-padded).
    let compact: Vec<&str> = text.split_whitespace().take(5).collect();
    if compact.len() == 5 && compact[4].ends_with(':') {
        if let (Some(mo), Some(d), Some(t), Some(y)) = (
            month(compact[1]),
            num(compact[2]),
            hms(compact[3]),
            num(compact[4].trim_end_matches(':')),
        ) {
            let idx = text.find(compact[4]).map(|i| i + compact[4].len());
            let rest = idx.map(|i| text[i..].trim_start()).unwrap_or("");
            return Some((days_from_civil(y, mo, d) * 86_400_000 + t, rest));
        }
    }
    // nginx error.log: `2026/11/22 01:31:24 [error] …`
    if words.len() >= 2 && words[0].len() == 10 && words[0].as_bytes().get(4) == Some(&b'/') {
        let iso = format!("{}T{}Z", words[0].replace('/', "-"), words[1]);
        if let Some(ms) = parse_iso(&iso) {
            // A stamp with nothing after it has no second space: `get` gives "" there.
            let rest = text
                .get(words[0].len() + words[1].len() + 2..)
                .unwrap_or("")
                .trim_start();
            return Some((ms, rest));
        }
    }
    // ISO first word: journalctl short-iso-precise, podman/docker logs -t.
    if let Some(first) = words.first() {
        if let Some(ms) = parse_iso(first) {
            return Some((ms, text[first.len()..].trim_start()));
        }
    }
    // nginx access.log: `addr - user [22/Nov/2026:01:31:24 +0000] "GET …"`
    if let (Some(a), Some(b)) = (text.find('['), text.find(']')) {
        if b > a {
            let inner = &text[a + 1..b];
            let (dt, z) = inner.split_once(' ').unwrap_or((inner, "+0000"));
            let mut p = dt.splitn(4, ['/', ':']);
            if let (Some(d), Some(mo), Some(y), Some(t)) = (p.next(), p.next(), p.next(), p.next())
            {
                if let (Some(d), Some(mo), Some(y), Some(t), Some(off)) =
                    (num(d), month(mo), num(y), hms(t), zone(z))
                {
                    return Some((days_from_civil(y, mo, d) * 86_400_000 + t - off, text));
                }
            }
        }
    }
    None
}

/// Unix ms → `2026-11-22T01:31:24.000Z`.
pub fn format_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // civil_from_days
    let z = days + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// One merged entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ms: i64,
    pub host: String,
    pub service: String,
    pub text: String,
}

/// Stamps one host's lines (continuations inherit the previous stamp; lines before any stamp
/// get `i64::MIN` so they sort first).
pub fn stamp_lines(host: &str, lines: Vec<Line>) -> Vec<Entry> {
    let mut last: std::collections::BTreeMap<String, i64> = Default::default();
    lines
        .into_iter()
        .map(|l| {
            let key = format!("{}\t{}", l.service, l.source);
            let (ms, text) = match stamp(&l.text) {
                Some((ms, rest)) => {
                    last.insert(key, ms);
                    (ms, rest.to_string())
                }
                None => (last.get(&key).copied().unwrap_or(i64::MIN), l.text.clone()),
            };
            Entry {
                ms,
                host: host.to_string(),
                service: l.service,
                text,
            }
        })
        .collect()
}

/// Merges entries in time order; equal times keep each host's own order (stable sort).
pub fn merge(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by_key(|e| e.ms);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_every_format() {
        let base = parse_iso("2026-11-22T01:31:24Z").expect("iso");
        let (ms, rest) =
            stamp("Sun Nov 22 01:31:24 2026: (VI_1) Entering MASTER STATE").expect("ka");
        assert_eq!((ms, rest), (base, "(VI_1) Entering MASTER STATE"));
        let (ms, rest) = stamp("Sun Nov  2 01:31:24 2026: x").expect("padded");
        assert_eq!(ms, base - 20 * 86_400_000);
        assert_eq!(rest, "x");
        let (ms, rest) = stamp("2026/11/22 01:31:24 [error] 12#12: boom").expect("nginx error");
        assert_eq!((ms, rest), (base, "[error] 12#12: boom"));
        let (ms, _) = stamp("198.18.0.1 - - [22/Nov/2026:02:31:24 +0100] \"GET / HTTP/1.0\" 200 6")
            .expect("access");
        assert_eq!(ms, base);
        let (ms, rest) = stamp("2026-11-22T01:31:24.250+0000 host1 keepalived[7]: hi").expect("j");
        assert_eq!((ms, rest), (base + 250, "host1 keepalived[7]: hi"));
        let (ms, _) = stamp("2026-11-22T01:31:24.123456789Z app started").expect("podman");
        assert_eq!(ms, base + 123);
        assert_eq!(stamp("   continuation"), None);
    }

    /// Regression (issue 15 §6): byte-index slicing panicked on a `--since` or a remote line
    /// whose 11th byte falls inside a multi-byte character, on a zone like `+1é1`, and on an
    /// nginx stamp with nothing after it.
    #[test]
    fn stamps_of_non_ascii_and_short_lines_do_not_panic() {
        for s in [
            "2026-11-2é01:31:24Z",
            "ééééééééééééééééééééé",
            "2026-11-22T01:31:24+1é1",
            "2026-11-22T01:31:24+é12",
            "2026/11/2é 01:31:24 x",
            "2026/11/22 01:31:24",
            "Sun Nov 22 01:31:24 2026:",
            "[22/Nov/2026:01:31:24 +1é1]",
            "[é]",
        ] {
            assert_eq!(parse_iso(s), None, "{s}");
            let _ = stamp(s);
            let _ = stamp_lines(
                "h",
                vec![Line {
                    service: "nginx".into(),
                    source: "f".into(),
                    text: s.into(),
                }],
            );
        }
        assert_eq!(
            stamp("2026/11/22 01:31:24"),
            Some((parse_iso("2026-11-22T01:31:24Z").expect("iso"), ""))
        );
    }

    proptest::proptest! {
        /// Any text at all (a remote line, a `--since`) is parsed or refused, never a panic.
        #[test]
        fn stamp_parsers_take_any_text(s in "\\PC{0,40}", t in "[0-9T:/ +.Zé€-]{0,30}") {
            let _ = parse_iso(&s);
            let _ = stamp(&s);
            let _ = parse_iso(&t);
            let _ = stamp(&t);
            let c = clean(&s);
            proptest::prop_assert!(!c.chars().any(|c| c.is_control() && c != '\t'));
        }
    }

    /// Regression (issue 15 §6): remote log lines were printed verbatim, so a line could
    /// recolour or clear the terminal, set its title, or overwrite itself with `\r`.
    #[test]
    fn remote_lines_lose_terminal_control_sequences() {
        let raw = "HACTL\tline\tnginx\t/var/log/nginx/access.log\t\x1b[31mred\x1b[0m \x1b]0;pwned\x07title \x1b[2J\x1b[Hclear\rover\x08\x07 \u{9b}31m c1\ttab é\n";
        let (lines, _) = parse(raw);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "red title clearover 31m c1\ttab é");
        assert!(!lines[0].text.chars().any(|c| c.is_control() && c != '\t'));
        // Plain lines are untouched.
        assert_eq!(
            clean("GET /é?a=b HTTP/1.1\t200"),
            "GET /é?a=b HTTP/1.1\t200"
        );
    }

    #[test]
    fn formats_and_merges() {
        assert_eq!(
            format_ms(parse_iso("2026-11-22T01:31:24.5Z").expect("iso")),
            "2026-11-22T01:31:24.500Z"
        );
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        let l = |t: &str| Line {
            service: "keepalived".into(),
            source: "/var/log/keepalived.log".into(),
            text: t.into(),
        };
        let a = stamp_lines(
            "host1",
            vec![l("Sun Nov 22 01:31:25 2026: a1"), l("  cont")],
        );
        let b = stamp_lines("host2", vec![l("Sun Nov 22 01:31:24 2026: b1")]);
        let m = merge(a.into_iter().chain(b).collect());
        let got: Vec<(&str, &str)> = m
            .iter()
            .map(|e| (e.host.as_str(), e.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("host2", "b1"), ("host1", "a1"), ("host1", "  cont")]
        );
    }

    #[test]
    fn read_script_shape() {
        let s = read_script(&["keepalived".into()], 100, &Default::default());
        assert!(s.contains("tail -n 100 /var/log/keepalived.log"));
        assert!(s.contains("journalctl -q --no-pager -o short-iso-precise -n 100 -u keepalived"));
        let mut off = std::collections::BTreeMap::new();
        off.insert("/var/log/keepalived.log".to_string(), 10);
        let s = read_script(&["keepalived".into()], 100, &off);
        assert!(s.contains("tail -c +11 /var/log/keepalived.log"));
        assert!(!s.contains("journalctl"));
        let (lines, sizes) =
            parse("HACTL\tsize\t/var/log/k\t42\nHACTL\tline\tkeepalived\t/var/log/k\ta\tb\n");
        assert_eq!(sizes, vec![("/var/log/k".to_string(), 42)]);
        assert_eq!(lines[0].text, "a\tb");
    }
}
