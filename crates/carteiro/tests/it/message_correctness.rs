//! Issue #8: every message carteiro produces is correct. A thousand messages
//! of deterministic pseudo-random variety (Portuguese accents, emoji, long
//! words, display names with commas, quotes and brackets, very long body
//! lines without spaces, text and HTML, attachments with accented names) go
//! through the batch API and SMTP to aiosmtpd; `tests/peers/check_messages.py`
//! then reads every message as it arrived with Python's `email` package
//! (`policy.default`) and checks it against what was submitted: no defect,
//! 7-bit CRLF lines of at most 998 octets, Date, Message-ID on carteiro's host
//! name, MIME-Version, RFC 2047 headers that decode to the input exactly,
//! multipart/alternative with text/plain first, base64 attachments with their
//! content types, names and bytes. Deliberately broken copies (controls) prove
//! the checker catches each kind of fault.

use std::collections::{BTreeSet, HashMap};
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::peers::python;
use crate::helpers::*;

const COUNT: usize = 1000;
const SEED: u64 = 0x0008_ca27_e120_2026;
/// Given with `--hostname` (the flag wins over the harness's `CARTEIRO_HOSTNAME`).
const HOSTNAME: &str = "correio.carteiro-teste.example";
const DEFAULT_NAME: &str = "Plataforma de Notificações, Sé \"Oficial\"";
const DEFAULT_ADDRESS: &str = "noreply@plataforma.example";

// ---------------------------------------------------------------------------
// Deterministic pseudo-random choices (SplitMix64: the same messages on every run).

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ---------------------------------------------------------------------------
// What the messages are made of.

const WORDS: &[&str] = &[
    "Aprovação",
    "pendente",
    "contrato",
    "nº",
    "17",
    "manutenção",
    "São",
    "Paulo",
    "ação",
    "relatório",
    "orçamento",
    "técnico",
    "você",
    "à",
    "às",
    "última",
    "revisão",
    "coração",
    "órgão",
    "índice",
    "câmbio",
    "pêssego",
    "avó",
    "avô",
    "é",
    "ÚLTIMO",
    "AÇÃO",
    "tarefa",
    "movida",
    "workflow",
    "fatura",
    "R$",
    "1.234,56",
    "–",
    "—",
    "“aspas”",
    "‘simples’",
    "(urgente)",
    "[Fluig]",
    "Benner:",
    "100%",
    "a=b",
    "?",
    "_",
    "\"citação\"",
    "<b>",
    "&amp;",
    "e-mail",
    "Conceição",
    "Araújo",
    "informações",
    "solicitação",
    "não",
    "já",
    "está",
    "até",
    "função",
    "ônibus",
    "açúcar",
    "Itaú",
    "Goiás",
    "Maranhão",
    "Paraná",
    "pão",
    "irmã",
    "põe",
    "lições",
    "também",
    "é",
    "crédito",
    "débito",
    "prêmio",
    "mês",
    "ótimo",
    "público",
    "sábado",
    "próximo",
    "rápido",
    "ÀS",
    "Á",
    "À",
    "Ã",
    "Â",
    "Ç",
    "É",
    "Ê",
    "Í",
    "Ó",
    "Ô",
    "Õ",
    "Ú",
    "the",
    "quick",
    "brown",
    "fox",
    "invoice",
    "#42",
    "50%",
    "@equipe",
    "x;y",
    "a,b",
    "(ok)",
    "=?",
    "?=",
];
const EMOJI: &[&str] = &["✅", "📎", "🚀", "👍🏽", "🇧🇷", "👨‍👩‍👧", "€", "😀", "⚠️", "📅", "🔔", "💰"];
const LONG_WORDS: &[&str] = &[
    "Pneumoultramicroscopicossilicovulcanoconiótico",
    "anticonstitucionalissimamente",
    "oftalmotorrinolaringologista",
    "inconstitucionalissimamente",
    "paraclorobenzilpirrolidinonetilbenzimidazol",
];
const FIRST: &[&str] = &[
    "Ana",
    "João",
    "Conceição",
    "Zé",
    "Maria José",
    "Érica",
    "Ângela",
    "Ícaro",
    "Úrsula",
    "Óscar",
    "Gonçalo",
    "Estêvão",
    "Lúcia",
    "Tânia",
    "Sebastião",
    "Inês",
    "Antônio",
    "Mônica",
    "Irmã Dulce",
    "Bia",
    "Ciça",
    "Jô",
];
const LAST: &[&str] = &[
    "Souza",
    "Araújo",
    "Gonçalves",
    "D'Ávila",
    "O'Brien",
    "Magalhães",
    "Brandão",
    "Assunção",
    "Müller",
    "da Conceição",
    "Simões",
    "Peçanha",
    "Bragança",
    "Ximenes",
    "Nóbrega",
    "Sant'Anna",
    "Falcão",
    "Guimarães",
];
const ORGS: &[&str] = &[
    "Financeiro",
    "RH",
    "Diretoria de Operações",
    "TI – Infraestrutura",
    "Compras & Suprimentos",
    "Jurídico",
    "Atendimento 24h",
    "Filial São João del-Rei",
];
const LOCALS: &[&str] = &["ana.souza", "joao+tarefa", "o'brien", "first_last", "financeiro", "x", "rh-sp", "a.b.c"];
/// Input domains and how they travel (international ones as punycode).
const DOMAINS: &[(&str, &str)] = &[
    ("cliente.example", "cliente.example"),
    ("acme.example", "acme.example"),
    ("empresa.com.br", "empresa.com.br"),
    ("açaí.com.br", "xn--aa-4iaz.com.br"),
    ("Exemplo.Example", "exemplo.example"),
];
const CONTENT_TYPES: &[&str] = &[
    "application/pdf",
    "image/png",
    "image/jpeg",
    "text/csv",
    "text/plain",
    "text/calendar",
    "text/html",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/zip",
    "application/octet-stream",
    "application/json",
];
const FILENAMES: &[&str] = &[
    "relatório.pdf",
    "orçamento 2026 (revisão 3).xlsx",
    "Ata de reunião, 25-11.docx",
    "\"citação\".txt",
    "foto 📷.png",
    "contrato_nº_17.pdf",
    "a;b=c.csv",
    "espaço  duplo.txt",
    "ÇÃÕÉÊÁÀÚÍÓÂ.TXT",
    "naïve café.ics",
    "plain.bin",
    "x=?utf-8?q?y?=.dat",
    "O'Brien & Filhos – extrato.pdf",
];

fn words(rng: &mut Rng, n: RangeInclusive<usize>) -> String {
    let n = rng.between(*n.start(), *n.end());
    (0..n).map(|_| rng.pick(WORDS)).collect::<Vec<_>>().join(" ")
}

/// Words up to about `chars` characters.
fn words_up_to(rng: &mut Rng, chars: RangeInclusive<usize>) -> String {
    let chars = rng.between(*chars.start(), *chars.end());
    let mut out = String::new();
    loop {
        let word = if rng.chance(10) { rng.pick(EMOJI) } else { rng.pick(WORDS) };
        if out.chars().count() + 1 + word.chars().count() > chars {
            return out;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn alnum(rng: &mut Rng, chars: RangeInclusive<usize>) -> String {
    let chars = rng.between(*chars.start(), *chars.end());
    (0..chars).map(|_| ALNUM[rng.below(ALNUM.len())] as char).collect()
}

/// A run of `chars` characters without a space.
fn token(rng: &mut Rng, chars: RangeInclusive<usize>) -> String {
    let chars = rng.between(*chars.start(), *chars.end());
    const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    match rng.below(6) {
        0 => alnum(rng, chars..=chars),
        1 => (0..chars).map(|_| BASE64[rng.below(BASE64.len())] as char).collect(),
        2 => "çãõéêáàúíóâ".chars().cycle().take(chars).collect(),
        3 => {
            let mut url = String::from("https://fluig.acme.example/portal/p/1/pageworkflowview?app=ecm&");
            while url.chars().count() < chars {
                url.push_str(&format!("p{}=valor%20{}&", rng.below(1000), rng.below(1000)));
            }
            url.chars().take(chars).collect()
        }
        4 => "=".repeat(chars),
        _ => LONG_WORDS.concat().chars().cycle().take(chars).collect(),
    }
}

fn display_name(rng: &mut Rng) -> String {
    let first = rng.pick(FIRST);
    let last = rng.pick(LAST);
    let org = rng.pick(ORGS);
    match rng.below(16) {
        0 => format!("{last}, {first}"),
        1 => format!("{first} \"{}\" {last}", rng.pick(&["Zezinho", "Tatá", "Nenê", "Bia"])),
        2 => format!("{first} {last} ({org})"),
        3 => format!("{org}: {first} {last}"),
        4 => format!("{first} {last} – {org}, Filial São Paulo"),
        5 => format!("{first} {last} {}", rng.pick(EMOJI)),
        6 => {
            let mut name = format!("{first} {last}");
            let target = rng.between(80, 200);
            while name.chars().count() < target {
                let word = if rng.chance(50) { rng.pick(LAST) } else { rng.pick(WORDS) };
                if name.chars().count() + 1 + word.chars().count() > target {
                    break;
                }
                name.push(' ');
                name.push_str(word);
            }
            name
        }
        7 => format!("{}@{} (via Fluig)", first.to_lowercase(), "acme"),
        8 => "Joao da Silva".to_owned(),
        9 => format!("{first} <{org}>"),
        10 => format!("{last}, {first}; {org}"),
        11 => format!("{org}\\{first}"),
        12 => format!("{}{}", rng.pick(LONG_WORDS), token(rng, 20..=120)),
        13 => format!("\"{first} {last}\""),
        14 => format!("{first} {last}, Jr."),
        _ => format!("{first} {last}"),
    }
}

/// A mailbox: what is submitted, and what its header must decode to.
struct Mailbox {
    input: Value,
    expected: Value,
    address: String,
    name: Option<String>,
}

fn mailbox(rng: &mut Rng, tag: &str) -> Mailbox {
    let name = (!rng.chance(15)).then(|| display_name(rng));
    let (domain_in, domain_out) = DOMAINS[rng.below(DOMAINS.len())];
    let local = format!("{}.{tag}", rng.pick(LOCALS));
    let address_in = format!("{local}@{domain_in}");
    let address = format!("{local}@{domain_out}");
    // The two forms the API takes; a name with a backslash only as parts.
    let as_text = rng.chance(50) && !name.as_deref().unwrap_or_default().contains('\\');
    let input = match (&name, as_text) {
        (None, true) => json!(address_in),
        (Some(n), true) => json!(format!("\"{}\" <{address_in}>", n.replace('"', "\\\""))),
        (n, false) => json!({"name": n, "address": address_in}),
    };
    Mailbox { expected: json!([name, address]), input, address, name }
}

fn subject(rng: &mut Rng) -> String {
    match rng.below(14) {
        0 => String::new(),
        1 => "Tarefa 17 movida".to_owned(),
        2 => words(rng, 2..=12),
        3 => format!("{} {} {}", rng.pick(EMOJI), words(rng, 4..=4), rng.pick(EMOJI)),
        4 => words_up_to(rng, 100..=998),
        5 => format!("Protocolo {}", token(rng, 60..=980)),
        6 => token(rng, 200..=998),
        7 => format!("=?utf-8?q?n=C3=A3o?= {} =?ISO-8859-1?Q?a?=", words(rng, 3..=3)),
        8 => format!("{}  {}\t{}", words(rng, 2..=2), words(rng, 2..=2), words(rng, 2..=2)),
        9 => format!("{} {}", rng.pick(LONG_WORDS), words(rng, 5..=5)),
        10 => "Re: Fwd: RES: ENC: Aprovação".to_owned(),
        11 => words_up_to(rng, 60..=90),
        12 => format!("Olá,{}!", rng.pick(FIRST)),
        _ => words(rng, 4..=9),
    }
}

/// A text line: mostly prose, sometimes what breaks naive encoders.
fn line(rng: &mut Rng) -> String {
    match rng.below(24) {
        0 => String::new(),
        1 => ".".to_owned(),
        2 => format!("From {}", words(rng, 5..=5)),
        3 | 4 => token(rng, 999..=6000),
        5 => words_up_to(rng, 1000..=3000),
        6 => format!("{}   ", words(rng, 4..=4)),
        7 => format!(" {}", words(rng, 4..=4)),
        8 => format!("{}\t{}", words(rng, 3..=3), words(rng, 3..=3)),
        9 => "=?utf-8?q?n=C3=A3o?= = sinal de igual =3D".to_owned(),
        10 => (0..rng.between(3, 40)).map(|_| rng.pick(EMOJI)).collect(),
        11 => "..".to_owned(),
        12 => format!("{}\u{a0}{}", words(rng, 2..=2), words(rng, 2..=2)),
        _ => words_up_to(rng, 10..=140),
    }
}

fn text_body(rng: &mut Rng) -> String {
    if rng.chance(2) {
        return String::new();
    }
    let lines: Vec<String> = (0..rng.between(1, 12)).map(|_| line(rng)).collect();
    let newline = if rng.chance(10) { "\r\n" } else { "\n" };
    let mut text = lines.join(newline);
    if rng.chance(60) {
        text.push_str(newline);
    }
    text
}

fn html_body(rng: &mut Rng) -> String {
    let paragraphs: Vec<String> = (0..rng.between(1, 8))
        .map(|_| match rng.below(8) {
            0 => format!("<p><a href=\"{}\">{}</a></p>", token(rng, 500..=4000), words(rng, 3..=3)),
            1 => {
                format!("<img alt=\"{}\" src=\"data:image/png;base64,{}\">", words(rng, 2..=2), token(rng, 3000..=3000))
            }
            2 => format!("<pre>{}</pre>", line(rng)),
            _ => format!("<p>{}</p>", words_up_to(rng, 20..=600)),
        })
        .collect();
    // Often minified: the whole document on one line.
    let join = if rng.chance(50) { "" } else { "\n" };
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body>{join}{}{join}</body></html>",
        words(rng, 3..=3),
        paragraphs.join(join)
    )
}

fn attachment(rng: &mut Rng) -> Value {
    let content_type = rng.pick(CONTENT_TYPES);
    let filename = match rng.below(4) {
        0 => {
            let stem: String = words_up_to(rng, 60..=240).replace(['/', '\\'], "-");
            format!("{stem}.pdf")
        }
        _ => rng.pick(FILENAMES).to_owned(),
    };
    let content = match (content_type.starts_with("text/"), rng.below(4)) {
        (_, 0) => Vec::new(),
        (true, 1) => text_body(rng).into_bytes(),
        // Latin-1 text with bare LFs: bytes that must come back exactly.
        (true, 2) => b"nome;cidade\nJo\xe3o;S\xe3o Paulo\nCon\xe7ei\xe7\xe3o;Macei\xf3\n".repeat(rng.between(1, 50)),
        _ => {
            let n = rng.between(1, 12_000);
            rng.bytes(n)
        }
    };
    json!({
        "filename": filename,
        "content_type": content_type,
        "content_base64": base64::engine::general_purpose::STANDARD.encode(content),
    })
}

/// How the company of a case treats user messages (SPEC §3).
#[derive(Clone, Copy)]
enum Mode {
    Allowed,
    OnBehalf,
    Rewrite,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Allowed, Mode::OnBehalf, Mode::Rewrite];

    fn slug(self) -> &'static str {
        match self {
            Mode::Allowed => "livre",
            Mode::OnBehalf => "em-nome",
            Mode::Rewrite => "reescrita",
        }
    }

    fn setting(self) -> &'static str {
        match self {
            Mode::Allowed => "allowed",
            Mode::OnBehalf => "on_behalf",
            Mode::Rewrite => "rewrite",
        }
    }
}

/// One message: what is submitted, and what the checker expects of it.
fn case(index: usize, mode: Mode, rng: &mut Rng) -> (Value, Value) {
    let mut tag = 0;
    let mut next = |rng: &mut Rng| {
        tag += 1;
        mailbox(rng, &format!("c{index}r{tag}"))
    };
    let count = |rng: &mut Rng, percent: usize, most: usize| if rng.chance(percent) { rng.between(1, most) } else { 0 };
    let mut to: Vec<Mailbox> = (0..count(rng, 85, 3)).map(|_| next(rng)).collect();
    let cc: Vec<Mailbox> = (0..count(rng, 30, 3)).map(|_| next(rng)).collect();
    let bcc: Vec<Mailbox> = (0..count(rng, 20, 2)).map(|_| next(rng)).collect();
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        to.push(next(rng));
    }
    let reply_to = rng.chance(25).then(|| next(rng));
    let subject = subject(rng);
    let (text, html) = match rng.below(10) {
        0..=3 => (Some(text_body(rng)), None),
        4 | 5 => (None, Some(html_body(rng))),
        _ => (Some(text_body(rng)), Some(html_body(rng))),
    };
    let mut headers = serde_json::Map::new();
    headers.insert("X-Caso".into(), json!(index.to_string()));
    if rng.chance(30) {
        headers.insert("X-Workflow".into(), json!(rng.below(100_000).to_string()));
    }
    if rng.chance(20) {
        headers.insert("X-Processo".into(), json!(words_up_to(rng, 10..=200)));
    }
    if rng.chance(5) {
        // Header values are at most 998 octets: an ASCII run as long as that.
        headers.insert("X-Token".into(), json!(alnum(rng, 900..=990)));
    }
    let attachments: Vec<Value> = (0..count(rng, 35, 3)).map(|_| attachment(rng)).collect();

    let default = (Some(DEFAULT_NAME.to_owned()), DEFAULT_ADDRESS.to_owned());
    let mut input = json!({
        "to": to.iter().map(|m| m.input.clone()).collect::<Vec<_>>(),
        "cc": cc.iter().map(|m| m.input.clone()).collect::<Vec<_>>(),
        "bcc": bcc.iter().map(|m| m.input.clone()).collect::<Vec<_>>(),
        "subject": subject, "text": text, "html": html, "headers": headers, "attachments": attachments,
    });
    if let Some(r) = &reply_to {
        input["reply_to"] = r.input.clone();
    }
    let pair = |m: &Mailbox| (m.name.clone(), m.address.clone());
    let as_json = |(name, address): &(Option<String>, String)| json!([name, address]);
    let reply = reply_to.as_ref().map(pair);
    // The sender rules of SPEC §3, worked out by hand.
    let (from, sender, reply) = if rng.chance(25) {
        input["kind"] = json!("system");
        (default, None, reply)
    } else {
        let actor = next(rng);
        input["kind"] = json!("user");
        input["actor"] = json!({"id": format!("u{index}"), "name": actor.name, "address": actor.input_address()});
        let custom = rng.chance(30).then(|| next(rng));
        if let Some(c) = &custom {
            input["from"] = c.input.clone();
        }
        let user = pair(custom.as_ref().unwrap_or(&actor));
        match mode {
            Mode::Allowed => (user, None, reply),
            Mode::OnBehalf => (user, Some(default), reply),
            Mode::Rewrite => {
                let name = user.0.clone().or(actor.name.clone());
                ((name, DEFAULT_ADDRESS.to_owned()), None, reply.or(Some(user)))
            }
        }
    };
    let expected = json!({
        "case": index,
        "subject": input["subject"],
        "from": as_json(&from),
        "sender": sender.as_ref().map(as_json),
        "reply_to": reply.as_ref().map(as_json),
        "to": to.iter().map(|m| m.expected.clone()).collect::<Vec<_>>(),
        "cc": cc.iter().map(|m| m.expected.clone()).collect::<Vec<_>>(),
        "bcc": bcc.iter().map(|m| m.address.clone()).collect::<Vec<_>>(),
        "headers": input["headers"], "text": input["text"], "html": input["html"], "attachments": input["attachments"],
    });
    (input, expected)
}

impl Mailbox {
    /// The address as submitted (an actor's address is given alone).
    fn input_address(&self) -> String {
        match &self.input {
            Value::Object(parts) => parts["address"].as_str().unwrap().to_owned(),
            Value::String(text) => {
                text.rsplit_once('<').map_or(text.as_str(), |(_, a)| a.trim_end_matches('>')).to_owned()
            }
            _ => unreachable!(),
        }
    }
}

// ---------------------------------------------------------------------------
// Controls: broken copies of a good message, each of which the checker must report.

/// The header block's line of `name` with its continuation lines: its byte range.
fn header_range(data: &[u8], name: &str) -> std::ops::Range<usize> {
    let head = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
    let needle = format!("\r\n{name}:").into_bytes();
    let start = data[..head].windows(needle.len()).position(|w| w.eq_ignore_ascii_case(&needle)).unwrap() + 2;
    let mut end = start;
    loop {
        end += data[end..].windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        if !matches!(data[end], b' ' | b'\t') {
            return start..end;
        }
    }
}

fn splice(data: &[u8], range: std::ops::Range<usize>, with: &[u8]) -> Vec<u8> {
    [&data[..range.start], with, &data[range.end..]].concat()
}

fn controls(data: &[u8], expected: &Value) -> Vec<(String, Vec<u8>, Value)> {
    let same = |e: &Value| e.clone();
    let mut out: Vec<(String, Vec<u8>, Value)> = vec![
        ("a line of 999 octets".into(), [data, &[b'x'; 999], b"\r\n"].concat(), same(expected)),
        (
            "a bare LF".into(),
            {
                let at = data.windows(2).position(|w| w == b"\r\n").unwrap();
                splice(data, at..at + 2, b"\n")
            },
            same(expected),
        ),
        (
            "no CRLF at the end".into(),
            {
                let mut cut = data.to_vec();
                while cut.ends_with(b"\r\n") {
                    cut.truncate(cut.len() - 2);
                }
                cut
            },
            same(expected),
        ),
        ("no Message-ID".into(), splice(data, header_range(data, "Message-ID"), b""), same(expected)),
        ("no Date".into(), splice(data, header_range(data, "Date"), b""), same(expected)),
        ("no MIME-Version".into(), splice(data, header_range(data, "MIME-Version"), b""), same(expected)),
        (
            "a Message-ID on another host".into(),
            {
                let range = header_range(data, "Message-ID");
                let line = String::from_utf8(data[range.clone()].to_vec()).unwrap().replace(HOSTNAME, "outro.example");
                splice(data, range, line.as_bytes())
            },
            same(expected),
        ),
        (
            "an 8-bit Subject".into(),
            {
                let subject = expected["subject"].as_str().unwrap();
                splice(data, header_range(data, "Subject"), format!("Subject: {subject}\r\n").as_bytes())
            },
            same(expected),
        ),
        (
            "a Bcc header".into(),
            {
                let range = header_range(data, "Subject");
                splice(data, range.start..range.start, b"Bcc: escondido@cliente.example\r\n")
            },
            same(expected),
        ),
        (
            "a malformed encoded word".into(),
            { splice(data, header_range(data, "Subject"), b"Subject: =?utf-8?B?w6=?= =?utf-8?Q?=C3?=\r\n") },
            same(expected),
        ),
    ];
    let mut changed = |what: &str, change: &dyn Fn(&mut Value)| {
        let mut e = expected.clone();
        change(&mut e);
        out.push((what.to_owned(), data.to_vec(), e));
    };
    changed("another subject", &|e| e["subject"] = json!(format!("{}!", e["subject"].as_str().unwrap())));
    changed("another From display name", &|e| e["from"][0] = json!("Outra, Pessoa"));
    changed("another To address", &|e| e["to"][0][1] = json!("outra@cliente.example"));
    changed("another attachment byte", &|e| {
        let a = &mut e["attachments"][0];
        let mut bytes =
            base64::engine::general_purpose::STANDARD.decode(a["content_base64"].as_str().unwrap()).unwrap();
        bytes.push(0);
        a["content_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    });
    changed("another attachment type", &|e| e["attachments"][0]["content_type"] = json!("application/x-outro"));
    changed("HTML before text", &|e| {
        let (text, html) = (e["text"].clone(), e["html"].clone());
        e["text"] = html;
        e["html"] = text;
    });
    changed("another custom header value", &|e| e["headers"]["X-Caso"] = json!("outro"));
    out
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_thousand_varied_messages_are_each_correct_mime() {
    let started = Instant::now();
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start_with(&["--hostname", HOSTNAME], &[]).await;
    app.set_global(json!({
        "connection": {"host": "127.0.0.1", "port": peer.port, "timeout_s": 10, "max_sessions": 8},
        "policy": {"default_sender_enabled": true, "default_sender_name": DEFAULT_NAME, "default_sender_address": DEFAULT_ADDRESS}
    }))
    .await;
    let mut companies = Vec::new();
    for mode in Mode::ALL {
        let company = app.create_company(mode.slug()).await;
        app.set_company_settings(&company, json!({"policy": {"send_as_others": mode.setting()}})).await;
        companies.push(company);
    }

    // The messages, one company in three each, submitted in one batch per company.
    let mut rng = Rng(SEED);
    let mut expected: Vec<Value> = Vec::with_capacity(COUNT);
    let mut batches: Vec<Vec<(usize, Value)>> = vec![Vec::new(); Mode::ALL.len()];
    for index in 0..COUNT {
        let (input, wanted) = case(index, Mode::ALL[index % 3], &mut rng);
        batches[index % 3].push((index, input));
        expected.push(wanted);
    }
    for (company, batch) in companies.iter().zip(&batches) {
        let body = json!({"messages": batch.iter().map(|(_, m)| m).collect::<Vec<_>>()});
        let (status, answer) = app.call(Method::POST, "/api/v1/messages/batch", Some(&company.key), Some(body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let results = answer["results"].as_array().unwrap();
        assert_eq!(results.len(), batch.len());
        for ((index, input), result) in batch.iter().zip(results) {
            let id = result["id"].as_str().unwrap_or_else(|| panic!("case {index} was refused: {result}\n{input:#}"));
            expected[*index]["id"] = json!(id);
        }
    }
    let submitted = started.elapsed();

    // Every message as it reached the server, by its X-Caso header.
    let dir = tempfile::tempdir().unwrap();
    let mut arrived: HashMap<usize, Vec<u8>> = HashMap::new();
    let deadline = Duration::from_secs(90);
    while arrived.len() < COUNT {
        let left = deadline.saturating_sub(started.elapsed());
        let message =
            tokio::time::timeout(left, peer.next_message(left + Duration::from_secs(1))).await.unwrap_or_else(|_| {
                panic!("only {} of {COUNT} messages reached the server in {deadline:?}", arrived.len())
            });
        let index: usize = message.header("X-Caso").expect("an X-Caso header").parse().unwrap();
        assert!(arrived.insert(index, message.data).is_none(), "case {index} arrived twice");
    }
    let delivered = started.elapsed();
    for (index, data) in &arrived {
        let file = format!("{index:04}.eml");
        std::fs::write(dir.path().join(&file), data).unwrap();
        expected[*index]["file"] = json!(file);
    }

    // Controls, from the first message with text, HTML, attachments, To and a subject.
    let model = (0..COUNT)
        .find(|&i| {
            let e = &expected[i];
            e["text"].is_string()
                && e["html"].is_string()
                && !e["attachments"].as_array().unwrap().is_empty()
                && !e["to"].as_array().unwrap().is_empty()
                && e["subject"].as_str().unwrap().len() > 5
        })
        .expect("a message with everything");
    let mut control_cases = Vec::new();
    for (n, (what, data, mut wanted)) in controls(&arrived[&model], &expected[model]).into_iter().enumerate() {
        let file = format!("control-{n:02}.eml");
        std::fs::write(dir.path().join(&file), data).unwrap();
        wanted["file"] = json!(file);
        wanted["mutation"] = json!(what);
        control_cases.push(wanted);
    }

    let manifest = dir.path().join("manifest.json");
    let document = json!({"dir": dir.path(), "hostname": HOSTNAME, "messages": expected, "controls": control_cases});
    std::fs::write(&manifest, serde_json::to_vec(&document).unwrap()).unwrap();
    let report = run_checker(&manifest).await;
    // To look at the messages after a failure: CARTEIRO_TEST_KEEP_MESSAGES=1 keeps them and the manifest.
    if std::env::var_os("CARTEIRO_TEST_KEEP_MESSAGES").is_some() {
        println!("messages kept in {}", dir.keep().display());
    }
    let checked_in = started.elapsed();
    println!(
        "message correctness: {} messages checked, {} failed, {} controls; submitted at {submitted:?}, \
         all delivered at {delivered:?}, checked at {checked_in:?}; stats {}",
        report["checked"], report["failed"], report["controls"], report["stats"]
    );

    let failures = report["failures"].as_array().unwrap();
    let shown: Vec<String> = failures.iter().take(25).map(|f| serde_json::to_string_pretty(f).unwrap()).collect();
    assert!(
        failures.is_empty(),
        "{} of {COUNT} messages are not correct; the first ones:\n{}",
        failures.len(),
        shown.join("\n")
    );
    assert_eq!(report["checked"], COUNT, "{report}");
    assert_eq!(report["controls"], control_cases.len());
    assert_eq!(report["controls_missed"], json!([]), "the checker let these broken messages pass");
    // The variety was there: folded and encoded headers, alternatives, attachments, long lines broken up.
    let stats = &report["stats"];
    for key in ["encoded_words", "folded_headers", "alternative", "attachments", "plain_cte_quoted-printable"] {
        assert!(stats[key].as_u64().unwrap_or(0) >= 20, "too few messages exercise {key}: {stats}");
    }
    let unique: BTreeSet<&str> = expected.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), COUNT);
}

async fn run_checker(manifest: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/check_messages.py");
    let output = tokio::process::Command::new(python()).arg(script).arg(manifest).output().await.unwrap();
    assert!(output.status.success(), "the checker failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("the checker's answer is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout))
    })
}
